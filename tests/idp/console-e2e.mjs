// End-to-end walk through ssogate's admin console in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core), as a customer's IT admin would:
// sign in, create an organization and its OpenID Connect connection, test the
// connection against the real OP, set a group mapping with a mistake and fix it,
// run a try-it sign-in, add an application with a webhook and a SCIM directory
// (pushing one user to it), then visit every other page. A screenshot of each page goes
// to the screenshots directory. Any failed expectation exits non-zero.
//
// Usage: node console-e2e.mjs '{"base": …, "token": …, "op_issuer": …, "client_id": …,
//                               "client_secret": …, "screenshots": "<dir>", "chromium": "/usr/bin/chromium"}'
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const input = JSON.parse(process.argv[2]);
mkdirSync(input.screenshots, { recursive: true });

function expect(condition, what) {
  if (!condition) throw new Error(`expectation failed: ${what}`);
}

const browser = await chromium.launch({ executablePath: input.chromium, args: ['--no-sandbox'] });
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
const dialogs = [];
page.on('dialog', async (d) => {
  dialogs.push(d.message());
  await d.accept();
});
const consoleErrors = [];
page.on('pageerror', (e) => consoleErrors.push(String(e)));
let shot = 0;
const screenshot = async (p, name) => {
  shot += 1;
  await p.screenshot({ path: `${input.screenshots}/${String(shot).padStart(2, '0')}-${name}.png`, fullPage: true });
};
const text = (selector) => page.locator(selector).first().innerText();
const result = {};

try {
  // Sign-in: a wrong token is refused at the field, the right one lets in.
  await page.goto(`${input.base}/admin`);
  await page.fill('#sign-in-token', 'not-the-admin-token-at-all');
  await page.click('#sign-in button[type=submit]');
  await page.waitForSelector('#sign-in-token-error:not(:empty)');
  expect((await text('#sign-in-token-error')).includes('not valid'), 'a wrong token is refused at the field');
  await screenshot(page, 'sign-in');
  await page.fill('#sign-in-token', input.token);
  await page.click('#sign-in button[type=submit]');
  await page.waitForSelector('#new-organization');
  await screenshot(page, 'organizations-empty');

  // An organization, with a licence of 10 seats.
  await page.fill('#new-organization-name', 'Globex Corp');
  await page.fill('#new-organization-domains', 'globex.test');
  await page.click('#new-organization button[type=submit]');
  await page.waitForURL(/#\/organizations\/globex-corp$/);
  await page.waitForSelector('#seat-usage');
  await page.fill('#entitlements-max_users', '10');
  await page.click('#entitlements button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#seat-usage').textContent.includes('0 of 10 seats used'));
  await screenshot(page, 'organization');

  // A group for the mapping to point at.
  await page.click('nav.tabs >> text=Groups');
  await page.waitForSelector('#new-group');
  await page.fill('#new-group-name', 'engineering');
  await page.fill('#new-group-permissions', 'manage_apps');
  await page.click('#new-group button[type=submit]');
  await page.waitForSelector('#groups >> text=engineering');
  await screenshot(page, 'groups');

  // Login: turn on OpenID Connect, fill in the IdP's details.
  await page.click('nav.tabs >> text=Login');
  await page.waitForSelector('#oidc-toggle');
  expect(await page.isHidden('#new-connection'), 'the connection form waits for the toggle');
  await page.check('#oidc-toggle');
  expect((await text('#new-redirect-uri-hint')).includes('own redirect URI'), 'the redirect URI comes with the connection');
  await page.fill('#connection-create-name', 'Globex IdP');
  await page.fill('#connection-create-client_id', input.client_id);
  await page.fill('#connection-create-client_secret', input.client_secret);
  await page.fill('#connection-create-discovery_url', `${input.op_issuer}/.well-known/openid-configuration`);
  await page.fill('#connection-create-scopes', 'openid profile email groups');
  await screenshot(page, 'login-new-connection');
  await page.click('#connection-create button[type=submit]');
  await page.waitForSelector('section.connection');
  const connectionId = (await page.getAttribute('section.connection', 'id')).replace('connection-', '');
  result.connection_id = connectionId;
  const redirectUri = await text('#redirect-uri');
  expect(redirectUri === `${input.base}/sso/callback/${connectionId}`, 'the connection shows its own redirect URI');
  // The IT admin registers it at the IdP.
  const registered = await fetch(`${input.op_issuer}/test/clients/${input.client_id}`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uris: [redirectUri] }),
  });
  expect(registered.status === 204, 'the IdP took the redirect URI');
  await screenshot(page, 'login-connection');

  // Test connection: discovery and JWKS check out against the real OP.
  await page.click('#test-connection');
  await page.waitForSelector('#test-report');
  expect((await text('#test-report')).includes('reachable and usable'), 'the test passes');
  expect(Number(await text('#test-keys')) > 0, 'the OP publishes signing keys');
  expect((await text('#test-credentials')) === 'accepted', 'the OP accepted the client ID and secret');
  await screenshot(page, 'test-connection');

  // Group sync: a mapping entry without "->" is refused, with the parser's message at the field.
  const sync = `#group-sync-${connectionId}`;
  await page.check(`${sync}-enabled`);
  await page.check(`${sync}-create_missing_groups`);
  await page.fill(`${sync}-mapping`, 'Engineering -> engineering\nSales Team');
  await page.click(`${sync} button[type=submit]`);
  await page.waitForSelector(`${sync}-mapping-error:not(:empty)`);
  const mappingError = await text(`${sync}-mapping-error`);
  expect(mappingError.includes('Sales Team'), `the error names the faulty entry: ${mappingError}`);
  result.mapping_error = mappingError;
  await screenshot(page, 'group-mapping-error');
  await page.fill(`${sync}-mapping`, 'Engineering -> engineering\nSales Team -> sales');
  await page.click(`${sync} button[type=submit]`);
  await page.waitForSelector(`${sync} .banner.ok`);
  expect((await text(`${sync}-mapping-error`)) === '', 'the error is gone');
  await screenshot(page, 'group-mapping-saved');

  // Try it: a sign-in in a new tab, ending on the preview; nobody is created.
  await page.fill(`#try-hint-${connectionId}`, 'grace');
  const [trial] = await Promise.all([context.waitForEvent('page'), page.click('#try-it')]);
  await trial.waitForSelector('#trial-result', { timeout: 20000 });
  const outcome = await trial.getAttribute('#trial-result', 'data-outcome');
  expect(outcome === 'ok', `the try-it sign-in works: ${await trial.locator('body').innerText()}`);
  const trialGroups = await trial.locator('#trial-groups li').allInnerTexts();
  expect(JSON.stringify(trialGroups) === JSON.stringify(['engineering', 'sales']), `mapped groups: ${trialGroups}`);
  expect((await trial.locator('#trial-new-groups li').allInnerTexts()).join() === 'sales', 'sales would be created');
  expect((await trial.locator('#trial-profile').innerText()).includes('grace@globex.test'), 'the profile');
  expect((await trial.locator('#trial-profile').innerText()).includes('builder'), 'the role from the engineering group');
  result.trial_groups = trialGroups;
  await screenshot(trial, 'try-it-result');
  await trial.close();
  // A sign-in the IdP refuses ends on the preview page too, with the IdP's reason.
  await page.fill(`#try-hint-${connectionId}`, 'deny');
  const [refused] = await Promise.all([context.waitForEvent('page'), page.click('#try-it')]);
  await refused.waitForSelector('#trial-result', { timeout: 20000 });
  expect((await refused.getAttribute('#trial-result', 'data-outcome')) === 'error', 'a refused sign-in shows as an error');
  expect((await refused.locator('#trial-result').innerText()).includes('access_denied'), 'with the OAuth error');
  await screenshot(refused, 'try-it-refused');
  await refused.close();

  await page.click('nav.tabs >> text=Users');
  await page.waitForSelector('#no-users');
  await screenshot(page, 'users-none-after-try-it');

  // A user added by hand, and their page.
  await page.fill('#new-user-email', 'walter@globex.test');
  await page.fill('#new-user-first_name', 'Walter');
  await page.click('#new-user button[type=submit]');
  await page.waitForSelector('#user-groups');
  expect((await text('#no-sessions')).includes('Not signed in'), 'no sessions yet');
  await screenshot(page, 'user');

  // Applications: the secret is shown once at creation, and again only by rotation.
  await page.click('#nav >> text=Applications');
  await page.waitForSelector('#new-application');
  await page.fill('#new-application-name', 'Dashboard');
  await page.fill('#new-application-redirect_uris', 'https://app.globex.test/callback');
  await page.click('#new-application button[type=submit]');
  await page.waitForSelector('#client-secret');
  const firstSecret = await text('#client-secret');
  expect(firstSecret.length >= 32, 'a client secret is shown');
  await screenshot(page, 'applications-secret-once');
  await page.click('a[href^="#/applications/app_"]');
  await page.waitForSelector('#rotate-secret');
  expect(!(await page.locator('#client-secret').count()), 'the secret is not shown again');
  await page.click('#rotate-secret');
  await page.waitForSelector('#client-secret');
  expect((await text('#client-secret')) !== firstSecret, 'rotation shows a new secret');
  await screenshot(page, 'application-rotated');

  // A webhook: its signing secret is shown once.
  await page.fill('#new-webhook-url', 'http://127.0.0.1:9/hooks');
  await page.fill('#new-webhook-events', 'dsync.user.created, session.ended');
  await page.click('#new-webhook button[type=submit]');
  await page.waitForSelector('#webhook-secret');
  expect((await text('#webhook-secret')).startsWith('whsec_'), 'the webhook secret is shown');
  await page.reload();
  await page.waitForSelector('#webhooks');
  expect((await text('#webhooks')).includes('dsync.user.created, session.ended'), 'the webhook is listed with its events');
  expect(!(await page.locator('#webhook-secret').count()), 'the webhook secret is not shown again');
  await screenshot(page, 'application-webhooks');

  // Directory sync: the SCIM URL and token shown once, and the IdP's first push seen.
  await page.goto(`${input.base}/admin#/organizations/globex-corp/directories`);
  await page.waitForSelector('#new-directory');
  await page.fill('#new-directory-name', 'Okta');
  await page.click('#new-directory button[type=submit]');
  await page.waitForSelector('#scim-token');
  const scimToken = await text('#scim-token');
  const scimUrl = await text('#scim-base-url');
  expect(scimToken.startsWith('scim_') && scimUrl.includes('/scim/v2/dir_'), 'the SCIM URL and token are shown');
  await screenshot(page, 'directory-token-once');
  const pushed = await fetch(`${scimUrl}/Users`, {
    method: 'POST',
    headers: { authorization: `Bearer ${scimToken}`, 'content-type': 'application/scim+json' },
    body: JSON.stringify({ userName: 'olga@globex.test', emails: [{ value: 'olga@globex.test', primary: true }] }),
  });
  expect(pushed.status === 201, `the IdP's push is taken: ${pushed.status}`);
  await page.reload();
  await page.waitForSelector('[id^="directory-dir_"]');
  expect((await text('[id^="directory-dir_"]')).includes('1 users') && (await text('[id^="directory-dir_"]')).includes('olga@globex.test'), 'the pushed user is shown');
  expect(!(await page.locator('#scim-token').count()), 'the token is not shown again');
  result.directory_id = scimUrl.split('/').pop();
  await screenshot(page, 'directory');

  // The audit log, filtered.
  await page.goto(`${input.base}/admin#/organizations/globex-corp/events`);
  await page.waitForSelector('#event-filters');
  await page.fill('#event-filters-action', 'connection.updated');
  await page.click('#event-filters button[type=submit]');
  await page.waitForURL(/action=connection.updated/);
  // The unfiltered table stays until the filtered one replaces it.
  await page.waitForFunction(() => {
    const cells = [...document.querySelectorAll('#events tr td:nth-child(3)')];
    return cells.length > 0 && cells.every((c) => c.textContent === 'connection.updated');
  });
  const actions = await page.locator('#events tr td:nth-child(3)').allInnerTexts();
  expect(actions.length > 0 && actions.every((a) => a === 'connection.updated'), `filtered events: ${actions}`);
  expect((await page.locator('#events tr td:nth-child(2)').allInnerTexts()).every((a) => a === 'admin_console'), 'changes are attributed to the console');
  await screenshot(page, 'audit-log');
  await page.goto(`${input.base}/admin#/events`);
  await page.waitForSelector('#events');
  await screenshot(page, 'audit-log-global');
  await page.goto(`${input.base}/admin#/signing-keys`);
  await page.waitForSelector('#signing-keys');
  await screenshot(page, 'signing-keys');

  // Whatever a name holds is shown as text, never run.
  await page.goto(`${input.base}/admin#/organizations`);
  await page.waitForSelector('#new-organization');
  const hostile = '<img src=x onerror="window.pwned=1">';
  await page.fill('#new-organization-name', hostile);
  await page.fill('#new-organization-slug', 'hostile');
  await page.click('#new-organization button[type=submit]');
  await page.waitForURL(/#\/organizations\/hostile$/);
  await page.waitForFunction((name) => document.querySelector('h1')?.textContent === name, hostile);
  expect(!(await page.evaluate(() => window.pwned)) && (await page.locator('img[src=x]').count()) === 0, 'no markup was injected');
  await screenshot(page, 'escaped-name');

  expect(consoleErrors.length === 0, `no script errors: ${consoleErrors}`);
  result.dialogs = dialogs;
  result.screenshots = shot;
  process.stdout.write(JSON.stringify({ ok: true, ...result }) + '\n');
} catch (err) {
  await screenshot(page, 'failure').catch(() => {});
  process.stdout.write(JSON.stringify({ ok: false, error: String(err?.stack || err), ...result }) + '\n');
  process.exitCode = 1;
} finally {
  await browser.close();
}
