// Front-channel logout (OIDC Front-Channel Logout 1.0) in a real browser: headless
// Chromium (Debian's, driven by playwright-core) signs in through ssogate and the
// real OP, then signs out at ssogate, confirming on its page; ssogate's signed-out
// page must load each application's front-channel logout URI in a frame (its CSP
// allowing exactly that), then move on to the IdP's sign-out and back to the app.
//
// Usage: node frontchannel-e2e.mjs '{"authorize_url", "logout_url", "app_prefix", "done_prefix", "chromium"}'
// Prints {"callback_url", "frames", "final_url", "csp_violations"}; exits 1 on failure.
import { chromium } from 'playwright-core';

const input = JSON.parse(process.argv[2]);
const visited = [];
// Whatever hangs, the test hears of it within a minute, with where the browser was.
setTimeout(() => {
  console.log(JSON.stringify({ error: 'timed out', visited }));
  process.exit(1);
}, 60000).unref();
const browser = await chromium.launch({ executablePath: input.chromium, args: ['--no-sandbox'] });
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('request', (r) => { if (r.isNavigationRequest()) visited.push(r.url().slice(0, 200)); });
  const violations = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });
  const framesLoaded = [];
  page.on('framenavigated', (f) => { if (f !== page.mainFrame()) framesLoaded.push(f.url()); });

  await page.goto(input.authorize_url, { waitUntil: 'commit' });
  await page.waitForURL((u) => u.href.startsWith(input.app_prefix), { timeout: 15000, waitUntil: 'commit' });
  const callback_url = page.url();

  await page.goto(input.logout_url);
  await page.click('#confirm-logout');
  // ssogate's signed-out page, which frames the applications, then moves on by itself.
  await page.waitForSelector('iframe', { state: 'attached', timeout: 10000 });
  const frames = await page.$$eval('iframe', (fs) => fs.map((f) => f.src));
  // The IdP may ask before signing out.
  await page.waitForURL((u) => !u.href.startsWith(new URL(input.logout_url).origin), { timeout: 15000 });
  const idpConfirm = page.locator('button[name=logout][value=yes], button[value=yes]');
  if (await idpConfirm.count()) await idpConfirm.first().click();
  await page.waitForURL((u) => u.href.startsWith(input.done_prefix), { timeout: 15000 });
  console.log(JSON.stringify({ callback_url, frames, frames_loaded: framesLoaded, final_url: page.url(), csp_violations: violations }));
} catch (err) {
  console.log(JSON.stringify({ error: String(err).slice(0, 1500), visited }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
