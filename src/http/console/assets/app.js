// The ssogate admin console: a single page over the JSON admin API (/api/v1).
// Every element is built with h(), which puts data in text nodes and attribute
// values only — never parsed as HTML — so whatever a user or an IdP sent is shown,
// not run. Errors come from the API as {error: {code, message, field}} and are shown
// at the form field they name.

const main = document.getElementById('main');
let session = null; // {csrf, public_url}

// ---------- DOM and API helpers ----------

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `request failed (${status})`);
    this.status = status;
    this.code = body?.error?.code;
    this.field = body?.error?.field;
  }
}

async function api(method, path, body) {
  const resp = await fetch(`/api/v1${path}`, {
    method,
    headers: { 'content-type': 'application/json', 'x-csrf-token': session?.csrf || '' },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  const text = await resp.text();
  const data = text ? JSON.parse(text) : null;
  if (resp.status === 401) {
    session = null;
    showSignIn();
    throw new ApiError(401, data);
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

const enc = encodeURIComponent;
const when = (t) => (t ? new Date(t).toLocaleString() : '—');
const lines = (text) => text.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
const words = (text) => text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);

function banner(kind, text) {
  return h('div', { class: `banner ${kind}`, role: kind === 'err' ? 'alert' : 'status' }, text);
}

function copyable(value, id) {
  return h('span', {}, h('code', { class: 'copy', id }, value), ' ',
    h('button', { type: 'button', class: 'link', onclick: () => navigator.clipboard?.writeText(value) }, 'Copy'));
}

// A form whose fields are described as data. submit(values) returns a promise;
// an ApiError naming a field is shown under that field, others above the buttons.
// Fields: {name, label, type: text|password|number|url|textarea|checkbox|select|datetime-local,
//          value, hint, options: [[value, label]], placeholder}
function form({ id, fields, submitLabel, submit, extraActions = [] }) {
  const inputs = {};
  const errors = {};
  const status = h('div', {});
  const rows = fields.map((f) => {
    const fid = `${id}-${f.name.replace(/[^a-z0-9_]+/gi, '-')}`;
    let input;
    if (f.type === 'textarea') input = h('textarea', { id: fid, name: f.name, placeholder: f.placeholder }, f.value ?? '');
    else if (f.type === 'select') {
      input = h('select', { id: fid, name: f.name }, f.options.map(([v, l]) => h('option', { value: v, selected: v === f.value }, l)));
    } else if (f.type === 'checkbox') input = h('input', { id: fid, name: f.name, type: 'checkbox', checked: !!f.value });
    else input = h('input', { id: fid, name: f.name, type: f.type || 'text', value: f.value ?? '', placeholder: f.placeholder, autocomplete: f.type === 'password' ? 'new-password' : 'off' });
    inputs[f.name] = input;
    errors[f.name] = h('div', { class: 'field-error', id: `${fid}-error` });
    const label = h('label', { for: fid }, f.label);
    return f.type === 'checkbox'
      ? h('div', { class: 'field check' }, input, ' ', label, f.hint && h('div', { class: 'hint' }, f.hint), errors[f.name])
      : h('div', { class: 'field' }, label, input, f.hint && h('div', { class: 'hint' }, f.hint), errors[f.name]);
  });
  const button = h('button', { type: 'submit' }, submitLabel);
  const el = h('form', { class: 'card', id, novalidate: true }, rows, status, h('div', { class: 'actions' }, button, extraActions));
  el.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    for (const e of Object.values(errors)) { e.textContent = ''; e.parentElement.classList.remove('invalid'); }
    status.replaceChildren();
    const values = {};
    for (const f of fields) values[f.name] = f.type === 'checkbox' ? inputs[f.name].checked : inputs[f.name].value;
    button.disabled = true;
    try {
      const message = await submit(values);
      if (message) status.replaceChildren(banner('ok', message));
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      const field = err.field && fields.find((f) => err.field === f.name || err.field.startsWith(`${f.name}[`) || err.field.startsWith(`${f.name}.`));
      if (field) {
        errors[field.name].textContent = err.message;
        errors[field.name].parentElement.classList.add('invalid');
        inputs[field.name].focus();
      } else {
        status.replaceChildren(banner('err', err.message));
      }
    } finally {
      button.disabled = false;
    }
  });
  return el;
}

async function confirmThen(question, action) {
  if (window.confirm(question)) await action();
}

// ---------- Sign-in ----------

function showSignIn() {
  document.getElementById('nav').hidden = true;
  main.replaceChildren(
    h('h1', {}, 'Sign in to the ssogate console'),
    h('p', { class: 'muted' }, 'Use the admin API token (printed once at first start, or set with SSOGATE_ADMIN_TOKEN).'),
    form({
      id: 'sign-in',
      fields: [{ name: 'token', label: 'Admin token', type: 'password' }],
      submitLabel: 'Sign in',
      submit: async ({ token }) => {
        const resp = await fetch('/admin/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
        const data = await resp.json();
        if (!resp.ok) throw new ApiError(resp.status, data);
        session = data;
        start();
      },
    }),
  );
}

// ---------- Organizations ----------

async function organizationsPage() {
  const list = await api('GET', '/organizations?limit=200');
  return [
    h('h1', {}, 'Organizations'),
    list.data.length === 0 ? h('p', { class: 'muted' }, 'No organization yet.') : h('table', { id: 'organizations' },
      h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Slug'), h('th', {}, 'Domains'), h('th', {}, 'Created')),
      list.data.map((o) => h('tr', {},
        h('td', {}, h('a', { href: `#/organizations/${enc(o.slug)}` }, o.name)),
        h('td', {}, o.slug), h('td', {}, o.domains.join(', ')), h('td', {}, when(o.created_at))))),
    h('h2', {}, 'New organization'),
    form({
      id: 'new-organization',
      fields: [
        { name: 'name', label: 'Name' },
        { name: 'slug', label: 'Slug', hint: 'Optional: derived from the name.' },
        { name: 'domains', label: 'Domains', hint: 'Email domains of its people, comma-separated (routes sign-ins by email).' },
      ],
      submitLabel: 'Create organization',
      submit: async (v) => {
        const body = { name: v.name, domains: words(v.domains) };
        if (v.slug.trim()) body.slug = v.slug.trim();
        const o = await api('POST', '/organizations', body);
        location.hash = `#/organizations/${enc(o.slug)}`;
      },
    }),
  ];
}

function orgTabs(org, current) {
  const tab = (path, label) => h('a', { href: `#/organizations/${enc(org.slug)}${path}`, class: current === label ? 'current' : '' }, label);
  return [
    h('p', { class: 'muted' }, h('a', { href: '#/organizations' }, 'Organizations'), ' / ', org.name),
    h('h1', {}, org.name),
    h('nav', { class: 'tabs' }, tab('', 'Overview'), tab('/login', 'Login'), tab('/users', 'Users'), tab('/groups', 'Groups'), tab('/directories', 'Directory sync'), tab('/events', 'Audit log')),
  ];
}

function seatUsage(e) {
  return e.max_users == null ? `${e.user_count} users (no seat limit)` : `${e.user_count} of ${e.max_users} seats used`;
}

async function organizationPage(slug) {
  const org = await api('GET', `/organizations/${enc(slug)}`);
  const e = await api('GET', `/organizations/${enc(org.id)}/entitlements`);
  const seats = h('p', { id: 'seat-usage' }, seatUsage(e));
  return [
    ...orgTabs(org, 'Overview'),
    h('h2', {}, 'Details'),
    form({
      id: 'organization',
      fields: [
        { name: 'name', label: 'Name', value: org.name },
        { name: 'slug', label: 'Slug', value: org.slug },
        { name: 'domains', label: 'Domains', value: org.domains.join(', '), hint: 'Comma-separated.' },
      ],
      submitLabel: 'Save',
      submit: async (v) => {
        const o = await api('PATCH', `/organizations/${enc(org.id)}`, { name: v.name, slug: v.slug, domains: words(v.domains) });
        if (o.slug !== slug) location.hash = `#/organizations/${enc(o.slug)}`;
        return 'Saved.';
      },
      extraActions: [h('button', { type: 'button', class: 'danger', onclick: () => confirmThen(`Delete ${org.name} with its connections, users and groups?`, async () => {
        await api('DELETE', `/organizations/${enc(org.id)}`);
        location.hash = '#/organizations';
      }) }, 'Delete organization')],
    }),
    h('h2', {}, 'Licence'),
    seats,
    form({
      id: 'entitlements',
      fields: [
        { name: 'sso', label: 'Single sign-on', type: 'checkbox', value: e.sso },
        { name: 'group_sync', label: 'Group sync', type: 'checkbox', value: e.group_sync },
        { name: 'max_users', label: 'Seats', type: 'number', value: e.max_users ?? '', hint: 'Empty: no limit.' },
        { name: 'expires_at', label: 'Expires', type: 'datetime-local', value: e.expires_at ? e.expires_at.slice(0, 16) : '', hint: 'UTC. Empty: never.' },
      ],
      submitLabel: 'Save licence',
      submit: async (v) => {
        const body = { sso: v.sso, group_sync: v.group_sync, max_users: v.max_users === '' ? null : Number(v.max_users), expires_at: v.expires_at ? `${v.expires_at}:00Z` : null };
        const saved = await api('PUT', `/organizations/${enc(org.id)}/entitlements`, body);
        seats.textContent = seatUsage(saved);
        return 'Licence saved.';
      },
    }),
  ];
}

// ---------- Login (connections) ----------

function connectionFields(c) {
  return [
    { name: 'name', label: 'Name', value: c?.name ?? 'OpenID Connect' },
    { name: 'client_id', label: 'Client ID', value: c?.client_id ?? '' },
    { name: 'client_secret', label: 'Client secret', type: 'password', hint: c ? 'Leave empty to keep the current secret.' : 'Stored encrypted; never shown again.' },
    { name: 'discovery_url', label: 'Well-known URL', value: c?.discovery_url ?? '', placeholder: 'https://idp.example.com/.well-known/openid-configuration', hint: 'The discovery document, or the issuer URL.' },
    { name: 'scopes', label: 'Scopes', value: (c?.scopes ?? ['openid', 'profile', 'email']).join(' '), hint: 'Add offline_access for background token refresh, groups where the IdP needs it.' },
    { name: 'logout_url', label: 'Logout URL', value: c?.logout_url ?? '', hint: 'Optional: where to sign users out at the IdP if it has no end_session_endpoint.' },
    { name: 'provisioning', label: 'Provisioning', type: 'select', value: c?.provisioning ?? 'jit', options: [['jit', 'Create users at first sign-in'], ['existing_users', 'Only users created beforehand']] },
    { name: 'user_match', label: 'Match users by', type: 'select', value: c?.user_match ?? 'email', options: [['email', 'Verified email'], ['preferred_username', 'Username (not unique, not stable: see the warning)'], ['sub', 'IdP subject (sub)']],
      hint: 'How a first sign-in finds a user created beforehand. Warning: a username is neither unique nor stable at most IdPs (OIDC Core §5.7); anyone who can pick one can take over the user who has it. Prefer email or sub.' },
    { name: 'trust_unverified_email', label: 'Trust this IdP\'s unverified emails for matching', type: 'checkbox', value: c?.trust_unverified_email ?? false,
      hint: 'Off: a first sign-in links to an existing user by email only when the IdP says the address is verified.' },
    { name: 'frontchannel_logout_by_subject', label: 'Front-channel logout names users by subject', type: 'checkbox', value: c?.frontchannel_logout_by_subject ?? false,
      hint: 'For IdPs that send the user\'s subject as sid and no sid in ID tokens (LemonLDAP::NG). Then any page that knows a subject can sign that user out.' },
  ];
}

function connectionBody(v, existing) {
  const body = { name: v.name, client_id: v.client_id, discovery_url: v.discovery_url, scopes: words(v.scopes), logout_url: v.logout_url.trim() || null, provisioning: v.provisioning, user_match: v.user_match, trust_unverified_email: v.trust_unverified_email, frontchannel_logout_by_subject: v.frontchannel_logout_by_subject };
  if (v.client_secret || !existing) body.client_secret = v.client_secret;
  return body;
}

function testReport(report) {
  const items = [
    ...report.problems.map((p) => h('li', { class: 'problem' }, h('b', {}, p.code), ': ', p.message)),
    ...report.warnings.map((w) => h('li', { class: 'warning' }, h('b', {}, w.code), ': ', w.message)),
  ];
  return h('div', { id: 'test-report', class: 'card' },
    report.ok ? banner('ok', 'The IdP is reachable and usable: discovery, signing keys and the client credentials check out.') : banner('err', 'Sign-ins through this connection would fail.'),
    h('table', {},
      h('tr', {}, h('th', {}, 'Issuer'), h('td', {}, report.issuer ?? '—')),
      h('tr', {}, h('th', {}, 'Client ID and secret'), h('td', { id: 'test-credentials' }, report.client_credentials)),
      h('tr', {}, h('th', {}, 'Signing keys'), h('td', { id: 'test-keys' }, String(report.signing_keys ?? 0))),
      h('tr', {}, h('th', {}, 'Signs ID tokens with'), h('td', {}, (report.signing_algs ?? []).join(', ') || 'not advertised')),
      h('tr', {}, h('th', {}, 'PKCE'), h('td', {}, report.pkce ? 'supported' : 'not advertised')),
      h('tr', {}, h('th', {}, 'Refresh tokens'), h('td', {}, report.refresh_tokens ? 'offered (add the offline_access scope to keep sessions in step with the IdP)' : 'not advertised')),
      h('tr', {}, h('th', {}, 'Logout'), h('td', { id: 'test-logout' }, (report.logout_channels ?? []).join(', ') || 'none advertised'))),
    items.length ? h('ul', { class: 'report' }, items) : null);
}

function connectionCard(c) {
  const report = h('div', {});
  const hint = h('input', { type: 'text', id: `try-hint-${c.id}`, placeholder: 'Sign in as (login hint, optional)' });
  const sync = c.group_sync;
  return h('section', { class: 'connection', id: `connection-${c.id}` },
    h('h2', {}, c.name),
    h('p', {}, 'Redirect URI to register at the IdP: ', copyable(c.own_redirect_uri, 'redirect-uri')),
    c.shared_redirect_uri ? h('div', { class: 'card warning', id: 'shared-redirect-uri' },
      h('p', {}, c.notice),
      h('button', { type: 'button', id: 'use-own-redirect-uri', onclick: () => confirmThen('Switch to this connection\'s own redirect URI? Register it at the IdP first, or sign-ins will fail.', async () => {
        await api('PATCH', `/connections/${enc(c.id)}`, { shared_redirect_uri: false });
        route();
      }) }, 'I registered it: switch to this URI')) : null,
    h('p', { class: 'muted' }, 'Post-logout redirect URI: ', copyable(c.post_logout_redirect_uri), h('br'), 'Back-channel logout URI: ', copyable(c.backchannel_logout_uri),
      h('br'), 'Front-channel logout URI (IdPs without back-channel logout; send iss and sid): ', copyable(c.frontchannel_logout_uri)),
    form({
      id: `connection-form-${c.id}`,
      fields: connectionFields(c),
      submitLabel: 'Save connection',
      submit: async (v) => { await api('PATCH', `/connections/${enc(c.id)}`, connectionBody(v, true)); return 'Connection saved.'; },
      extraActions: [
        h('button', { type: 'button', class: 'secondary', id: 'test-connection', onclick: async (ev) => {
          ev.target.disabled = true;
          try { report.replaceChildren(testReport(await api('POST', `/connections/${enc(c.id)}/test`))); } finally { ev.target.disabled = false; }
        } }, 'Test connection'),
      ],
    }),
    report,
    h('div', { class: 'card' }, h('h3', {}, 'Try it'),
      h('p', { class: 'muted' }, 'Sign in through this connection in a new tab and see the profile, groups and role ssogate would produce. No user is created.'),
      h('div', { class: 'actions' }, hint, h('button', { type: 'button', id: 'try-it', onclick: () => {
        const q = hint.value.trim() ? `?login_hint=${enc(hint.value.trim())}` : '';
        window.open(`/admin/try/${enc(c.id)}${q}`, '_blank', 'noopener');
      } }, 'Try it'))),
    h('h3', {}, 'Group sync'),
    form({
      id: `group-sync-${c.id}`,
      fields: [
        { name: 'enabled', label: 'Sync groups from the IdP at every sign-in', type: 'checkbox', value: sync.enabled },
        { name: 'claim', label: 'Groups claim', value: sync.claim, hint: 'Claim name or dotted path (realm_access.roles).' },
        { name: 'mapping', label: 'Group mapping', type: 'textarea', value: sync.mapping, placeholder: 'Marketing Team -> marketing, Sales Team -> sales', hint: 'IdP group -> ssogate group, separated by commas or new lines.' },
        { name: 'create_missing_groups', label: 'Create ssogate groups for unmapped IdP groups', type: 'checkbox', value: sync.create_missing_groups },
        { name: 'authoritative', label: 'Sync owns every membership (also replaces groups set by hand)', type: 'checkbox', value: sync.authoritative },
      ],
      submitLabel: 'Save group sync',
      submit: async (v) => {
        try {
          await api('PATCH', `/connections/${enc(c.id)}`, { group_sync: { enabled: v.enabled, claim: v.claim, mapping: v.mapping, create_missing_groups: v.create_missing_groups, authoritative: v.authoritative } });
        } catch (err) {
          // The API names nested fields `group_sync.<name>`; show them at the field.
          if (err instanceof ApiError && err.field?.startsWith('group_sync.')) err.field = err.field.slice('group_sync.'.length);
          throw err;
        }
        return 'Group sync saved. Existing users are re-synced in the background.';
      },
    }),
    h('div', { class: 'actions' }, h('button', { type: 'button', class: 'danger', onclick: () => confirmThen(`Delete the connection ${c.name}? Its users can no longer sign in.`, async () => {
      await api('DELETE', `/connections/${enc(c.id)}`);
      route();
    }) }, 'Delete connection')));
}

async function loginPage(slug) {
  const org = await api('GET', `/organizations/${enc(slug)}`);
  const conns = (await api('GET', `/organizations/${enc(org.id)}/connections?limit=200`)).data;
  const newForm = h('div', { id: 'new-connection', hidden: true },
    h('p', { class: 'muted', id: 'new-redirect-uri-hint' }, 'Each connection has its own redirect URI; it is shown once the connection is created. Register it at the IdP before signing in.'),
    form({
      id: 'connection-create',
      fields: connectionFields(null),
      submitLabel: 'Create connection',
      submit: async (v) => { await api('POST', `/organizations/${enc(org.id)}/connections`, connectionBody(v, false)); route(); },
    }));
  const toggle = h('input', { type: 'checkbox', id: 'oidc-toggle', checked: conns.length > 0, disabled: conns.length > 0, onchange: (ev) => { newForm.hidden = !ev.target.checked; } });
  return [
    ...orgTabs(org, 'Login'),
    h('label', { class: 'switch', for: 'oidc-toggle' }, toggle, 'OpenID Connect'),
    conns.length ? h('p', { class: 'muted' }, 'Users of this organization sign in through the connection below.') : h('p', { class: 'muted' }, 'Turn on to connect the organization\'s identity provider (Okta, Entra ID, Keycloak, Google, …).'),
    conns.map(connectionCard),
    conns.length ? h('p', {}, h('button', { type: 'button', class: 'link', onclick: () => { newForm.hidden = false; } }, 'Add another connection')) : null,
    newForm,
  ];
}

async function connectionRedirect(id) {
  const c = await api('GET', `/connections/${enc(id)}`);
  const org = await api('GET', `/organizations/${enc(c.organization_id)}`);
  location.replace(`#/organizations/${enc(org.slug)}/login`);
  return [];
}

// ---------- Users ----------

async function usersPage(slug) {
  const org = await api('GET', `/organizations/${enc(slug)}`);
  const users = (await api('GET', `/organizations/${enc(org.id)}/users?limit=200`)).data;
  return [
    ...orgTabs(org, 'Users'),
    users.length === 0 ? h('p', { class: 'muted', id: 'no-users' }, 'No user yet: users appear at their first sign-in, or add one below.') : h('table', { id: 'users' },
      h('tr', {}, h('th', {}, 'Email'), h('th', {}, 'Name'), h('th', {}, 'Role'), h('th', {}, 'Groups'), h('th', {}, 'Last sign-in')),
      users.map((u) => h('tr', {},
        h('td', {}, h('a', { href: `#/users/${enc(u.id)}` }, u.email ?? u.username ?? u.idp_sub ?? u.id)),
        h('td', {}, [u.first_name, u.last_name].filter(Boolean).join(' ')),
        h('td', {}, u.role), h('td', {}, u.groups.map((g) => h('span', { class: 'pill' }, g))), h('td', {}, when(u.last_login_at))))),
    h('h2', {}, 'Add a user'),
    form({
      id: 'new-user',
      fields: [{ name: 'email', label: 'Email' }, { name: 'first_name', label: 'First name' }, { name: 'last_name', label: 'Last name' }],
      submitLabel: 'Add user',
      submit: async (v) => {
        const body = Object.fromEntries(Object.entries(v).filter(([, x]) => x.trim()));
        const u = await api('POST', `/organizations/${enc(org.id)}/users`, body);
        location.hash = `#/users/${enc(u.id)}`;
      },
    }),
  ];
}

async function userPage(id) {
  const u = await api('GET', `/users/${enc(id)}`);
  const org = await api('GET', `/organizations/${enc(u.organization_id)}`);
  const groups = (await api('GET', `/organizations/${enc(org.id)}/groups?limit=200`)).data;
  const sessions = (await api('GET', `/users/${enc(id)}/sessions`)).data;
  const boxes = groups.map((g) => h('label', { class: 'pill' }, h('input', { type: 'checkbox', value: g.name, checked: u.groups.includes(g.name) }), ' ', g.name,
    u.synced_groups.includes(g.name) ? h('span', { class: 'muted', title: 'From the IdP\'s groups: group sync keeps it up to date' }, ' (synced)') : null));
  const groupStatus = h('div', {});
  return [
    h('p', { class: 'muted' }, h('a', { href: `#/organizations/${enc(org.slug)}/users` }, org.name), ' / ', u.email ?? u.id),
    h('h1', {}, u.email ?? u.username ?? u.id),
    h('table', { id: 'user' },
      [['Name', [u.first_name, u.last_name].filter(Boolean).join(' ')], ['Username', u.username], ['Role', u.role], ['IdP subject', u.idp_sub],
        ['IdP groups', u.idp_groups.map((g) => g.name || g.id).join(', ')], ['Last sign-in', when(u.last_login_at)], ['Created', when(u.created_at)]]
        .map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v || '—')))),
    h('h2', {}, 'Groups'),
    h('div', { id: 'user-groups' }, boxes),
    groupStatus,
    h('div', { class: 'actions' }, h('button', { type: 'button', onclick: async () => {
      const chosen = boxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
      try { await api('PATCH', `/users/${enc(id)}`, { groups: chosen }); groupStatus.replaceChildren(banner('ok', 'Groups saved.')); route(); } catch (err) { groupStatus.replaceChildren(banner('err', err.message)); }
    } }, 'Save groups')),
    h('h2', {}, 'Sessions'),
    sessions.length === 0 ? h('p', { class: 'muted', id: 'no-sessions' }, 'Not signed in anywhere.') : h('table', { id: 'sessions' },
      h('tr', {}, h('th', {}, 'Signed in'), h('th', {}, 'Last active'), h('th', {}, 'Ends'), h('th', {}, 'IdP tokens'), h('th', {}, '')),
      sessions.map((s) => h('tr', {}, h('td', {}, when(s.auth_time)), h('td', {}, when(s.last_active_at)), h('td', {}, when(s.expires_at)),
        h('td', {}, s.upstream.has_refresh_token ? `refreshed ${when(s.upstream.last_refreshed_at)}` : 'no refresh token', s.upstream.last_error ? h('div', { class: 'field-error' }, s.upstream.last_error) : null),
        h('td', {}, h('button', { type: 'button', class: 'danger', onclick: async () => { await api('DELETE', `/users/${enc(id)}/sessions/${enc(s.id)}`); route(); } }, 'Revoke'))))),
    h('div', { class: 'actions' },
      sessions.length ? h('button', { type: 'button', class: 'danger', onclick: () => confirmThen('Sign this user out everywhere?', async () => { await api('DELETE', `/users/${enc(id)}/sessions`); route(); }) }, 'Sign out everywhere') : null,
      h('button', { type: 'button', class: 'danger', onclick: () => confirmThen('Delete this user?', async () => { await api('DELETE', `/users/${enc(id)}`); location.hash = `#/organizations/${enc(org.slug)}/users`; }) }, 'Delete user')),
  ];
}

// ---------- Groups ----------

async function groupsPage(slug) {
  const org = await api('GET', `/organizations/${enc(slug)}`);
  const groups = (await api('GET', `/organizations/${enc(org.id)}/groups?limit=200`)).data;
  const groupForm = (g) => form({
    id: g ? `group-${g.id}` : 'new-group',
    fields: [
      { name: 'name', label: 'Name', value: g?.name ?? '' },
      { name: 'description', label: 'Description', value: g?.description ?? '' },
      { name: 'permissions', label: 'Permissions', value: (g?.permissions ?? []).join(', '), hint: 'e.g. manage_apps, manage_users, admin, or your own.' },
    ],
    submitLabel: g ? 'Save group' : 'Create group',
    submit: async (v) => {
      const body = { name: v.name, description: v.description.trim() || null, permissions: words(v.permissions) };
      if (g) { await api('PATCH', `/groups/${enc(g.id)}`, body); return 'Saved.'; }
      await api('POST', `/organizations/${enc(org.id)}/groups`, body);
      route();
    },
    extraActions: g && !g.is_default ? [h('button', { type: 'button', class: 'danger', onclick: () => confirmThen(`Delete the group ${g.name}?`, async () => { await api('DELETE', `/groups/${enc(g.id)}`); route(); }) }, 'Delete')] : [],
  });
  return [
    ...orgTabs(org, 'Groups'),
    h('table', { id: 'groups' },
      h('tr', {}, h('th', {}, 'Group'), h('th', {}, 'Permissions'), h('th', {}, 'Description')),
      groups.map((g) => h('tr', {}, h('td', {}, g.name, g.is_default ? h('span', { class: 'pill' }, 'default') : null),
        h('td', {}, g.permissions.map((p) => h('span', { class: 'pill' }, p))), h('td', {}, g.description ?? '')))),
    groups.filter((g) => !g.is_default).map((g) => h('details', {}, h('summary', {}, `Edit ${g.name}`), groupForm(g))),
    h('h2', {}, 'New group'),
    groupForm(null),
  ];
}

// ---------- Directory sync ----------

function tokenShownOnce(d) {
  return h('div', { class: 'card', id: 'shown-once' }, h('h3', {}, 'SCIM connection — the token is shown this once'),
    h('p', {}, 'Enter both at the IdP\'s provisioning settings (Okta: SCIM connector base URL and HTTP header; Entra ID: tenant URL and secret token). Only the token\'s hash is kept.'),
    h('p', {}, 'SCIM base URL: ', copyable(d.scim_base_url, 'scim-base-url')),
    h('div', { class: 'secret', id: 'scim-token' }, d.bearer_token));
}

async function directoriesPage(slug) {
  const org = await api('GET', `/organizations/${enc(slug)}`);
  const directories = (await api('GET', `/organizations/${enc(org.id)}/directories?limit=200`)).data;
  const connections = (await api('GET', `/organizations/${enc(org.id)}/connections?limit=200`)).data;
  const shown = h('div', {});
  const card = async (listed) => {
    const d = await api('GET', `/directories/${enc(listed.id)}`);
    const users = (await api('GET', `/directories/${enc(d.id)}/users?count=20`)).Resources;
    const groups = (await api('GET', `/directories/${enc(d.id)}/groups?count=20`)).Resources;
    return h('div', { class: 'card', id: `directory-${d.id}` },
      h('h3', {}, d.name),
      h('p', {}, 'SCIM base URL: ', copyable(d.scim_base_url, `url-${d.id}`)),
      h('p', { class: 'muted' }, `${d.user_count} users, ${d.group_count} groups · last request ${when(d.last_request_at)} · token issued ${when(d.token_rotated_at)}`),
      d.last_error ? banner('err', `Last refused request (${when(d.last_error_at)}): ${d.last_error}`) : null,
      users.length ? h('table', {}, h('tr', {}, h('th', {}, 'User'), h('th', {}, 'Active'), h('th', {}, 'Groups')),
        users.map((u) => h('tr', {}, h('td', {}, h('a', { href: `#/users/${enc(u.id)}` }, u.userName)), h('td', {}, u.active === false ? 'no' : 'yes'),
          h('td', {}, (u.groups ?? []).map((g) => h('span', { class: 'pill' }, g.display)))))) : h('p', { class: 'muted' }, 'No user pushed yet.'),
      groups.length ? h('p', {}, 'Groups: ', groups.map((g) => h('span', { class: 'pill' }, `${g.displayName} (${(g.members ?? []).length})`))) : null,
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', onclick: () => confirmThen('Issue a new token? The IdP\'s current one stops working at once.', async () => {
          shown.replaceChildren(tokenShownOnce(await api('POST', `/directories/${enc(d.id)}/rotate-token`)));
        }) }, 'Rotate token'),
        h('button', { type: 'button', class: 'danger', onclick: () => confirmThen(`Delete the directory ${d.name}? Its users stay, as users no directory knows.`, async () => {
          await api('DELETE', `/directories/${enc(d.id)}`); route();
        }) }, 'Delete')));
  };
  return [
    ...orgTabs(org, 'Directory sync'),
    h('p', { class: 'muted' }, 'The customer\'s IdP pushes users and groups here over SCIM 2.0. Pushed users are linked to sign-ins by the connection\'s matching rule; their groups go through its group mapping; a deactivated user is signed out everywhere at once.'),
    shown,
    await Promise.all(directories.map(card)),
    h('h2', {}, 'New directory'),
    connections.length === 0 ? h('p', { class: 'muted' }, 'Add a connection (Login tab) first: a directory belongs to one.') : form({
      id: 'new-directory',
      fields: [
        { name: 'name', label: 'Name', value: '', placeholder: 'e.g. Okta' },
        { name: 'connection_id', label: 'Connection (the same IdP)', type: 'select', value: connections[0].id, options: connections.map((c) => [c.id, c.name]) },
      ],
      submitLabel: 'Create directory',
      submit: async (v) => { shown.replaceChildren(tokenShownOnce(await api('POST', `/organizations/${enc(org.id)}/directories`, v))); },
    }),
    form({
      id: 'groups-source',
      fields: [{ name: 'groups_source', label: 'When the directory and the groups claim at sign-in both speak for a user, memberships follow', type: 'select', value: org.groups_source,
        options: [['directory', 'the directory (changes arrive as they happen)'], ['sign_in', 'the groups claim at each sign-in and refresh']] }],
      submitLabel: 'Save',
      submit: async (v) => { await api('PATCH', `/organizations/${enc(org.id)}`, v); return 'Saved.'; },
    }),
  ];
}

// ---------- Audit log ----------

function eventsTable(events) {
  return h('table', { id: 'events' },
    h('tr', {}, h('th', {}, 'When'), h('th', {}, 'Actor'), h('th', {}, 'Action'), h('th', {}, 'Target'), h('th', {}, 'Changes')),
    events.map((e) => h('tr', {}, h('td', {}, when(e.created_at)), h('td', {}, e.actor), h('td', {}, e.action),
      h('td', {}, `${e.target_type} ${e.target_id}`), h('td', {}, h('pre', {}, JSON.stringify(e.changes, null, 1))))));
}

async function eventsPage(slug, query) {
  const org = slug ? await api('GET', `/organizations/${enc(slug)}`) : null;
  const params = new URLSearchParams(query);
  const base = org ? `/organizations/${enc(org.id)}/events` : '/events';
  const filters = new URLSearchParams({ limit: '50' });
  for (const k of ['action', 'target_id', 'cursor']) if (params.get(k)) filters.set(k, params.get(k));
  const page = await api('GET', `${base}?${filters}`);
  const here = org ? `#/organizations/${enc(org.slug)}/events` : '#/events';
  const filterForm = form({
    id: 'event-filters',
    fields: [
      { name: 'action', label: 'Action', value: params.get('action') ?? '', placeholder: 'e.g. user.groups_synced, connection.updated, session.ended' },
      { name: 'target_id', label: 'Target id', value: params.get('target_id') ?? '' },
    ],
    submitLabel: 'Filter',
    submit: async (v) => {
      const q = new URLSearchParams(Object.entries(v).filter(([, x]) => x.trim()));
      location.hash = `${here}?${q}`;
    },
  });
  const next = page.next_cursor && (() => { const q = new URLSearchParams(params); q.set('cursor', page.next_cursor); return h('a', { href: `${here}?${q}` }, 'Older events'); })();
  return [
    ...(org ? orgTabs(org, 'Audit log') : [h('h1', {}, 'Audit log'), h('p', { class: 'muted' }, 'Changes that belong to no organization (applications, signing keys). Each organization has its own log.')]),
    filterForm,
    page.data.length ? eventsTable(page.data) : h('p', { class: 'muted' }, 'No events match.'),
    next,
  ];
}

// ---------- Applications ----------

function secretShownOnce(app) {
  return h('div', { class: 'card', id: 'shown-once' }, h('h3', {}, 'Client secret — shown this once'),
    h('p', {}, 'Copy it into the application\'s configuration now; only its hash is kept.'),
    h('div', { class: 'secret', id: 'client-secret' }, app.client_secret));
}

function applicationFields(a) {
  return [
    { name: 'name', label: 'Name', value: a?.name ?? '' },
    { name: 'redirect_uris', label: 'Redirect URIs', type: 'textarea', value: (a?.redirect_uris ?? []).join('\n'), hint: 'One per line; matched exactly.' },
    { name: 'post_logout_redirect_uris', label: 'Post-logout redirect URIs', type: 'textarea', value: (a?.post_logout_redirect_uris ?? []).join('\n') },
    { name: 'backchannel_logout_uri', label: 'Back-channel logout URI', value: a?.backchannel_logout_uri ?? '', hint: 'Optional: receives a logout token when a user\'s session ends.' },
    { name: 'expose_idp_tokens', label: 'May read the user\'s IdP access token (SSO user info)', type: 'checkbox', value: a?.expose_idp_tokens ?? false },
  ];
}

function applicationBody(v) {
  return { name: v.name, redirect_uris: lines(v.redirect_uris), post_logout_redirect_uris: lines(v.post_logout_redirect_uris), backchannel_logout_uri: v.backchannel_logout_uri.trim() || null, expose_idp_tokens: v.expose_idp_tokens };
}

async function applicationsPage() {
  const apps = (await api('GET', '/applications?limit=200')).data;
  const created = h('div', {});
  return [
    h('h1', {}, 'Applications'),
    apps.length === 0 ? h('p', { class: 'muted' }, 'No application yet.') : h('table', { id: 'applications' },
      h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Client ID'), h('th', {}, 'Type'), h('th', {}, 'Redirect URIs')),
      apps.map((a) => h('tr', {}, h('td', {}, h('a', { href: `#/applications/${enc(a.id)}` }, a.name)), h('td', {}, h('code', {}, a.client_id)),
        h('td', {}, a.client_type), h('td', {}, a.redirect_uris.join(' '))))),
    h('h2', {}, 'New application'),
    created,
    form({
      id: 'new-application',
      fields: [...applicationFields(null), { name: 'client_type', label: 'Client type', type: 'select', value: 'confidential', options: [['confidential', 'Confidential (server-side, has a secret)'], ['public', 'Public (SPA or native app, PKCE)']] }],
      submitLabel: 'Create application',
      submit: async (v) => {
        const body = applicationBody(v);
        if (!body.backchannel_logout_uri) delete body.backchannel_logout_uri;
        const app = await api('POST', '/applications', { ...body, client_type: v.client_type });
        created.replaceChildren(h('p', {}, 'Created ', h('a', { href: `#/applications/${enc(app.id)}` }, app.name), '. Client ID: ', copyable(app.client_id, 'client-id')),
          app.client_secret ? secretShownOnce(app) : null);
      },
    }),
  ];
}

async function applicationPage(id) {
  const a = await api('GET', `/applications/${enc(id)}`);
  const rotated = h('div', {});
  return [
    h('p', { class: 'muted' }, h('a', { href: '#/applications' }, 'Applications'), ' / ', a.name),
    h('h1', {}, a.name),
    h('p', {}, 'Client ID: ', copyable(a.client_id, 'client-id'), ' · ', a.client_type),
    form({
      id: 'application',
      fields: applicationFields(a),
      submitLabel: 'Save',
      submit: async (v) => { await api('PATCH', `/applications/${enc(id)}`, applicationBody(v)); return 'Saved.'; },
      extraActions: [
        a.client_type === 'confidential' ? h('button', { type: 'button', class: 'secondary', id: 'rotate-secret', onclick: () => confirmThen('Issue a new client secret? The current one stops working at once.', async () => {
          rotated.replaceChildren(secretShownOnce(await api('POST', `/applications/${enc(id)}/rotate-secret`)));
        }) }, 'Rotate secret') : null,
        h('button', { type: 'button', class: 'danger', onclick: () => confirmThen(`Delete ${a.name}?`, async () => { await api('DELETE', `/applications/${enc(id)}`); location.hash = '#/applications'; }) }, 'Delete'),
      ],
    }),
    rotated,
    h('h2', {}, 'Webhooks'),
    await webhooksSection(a),
  ];
}

function webhookSecretShownOnce(w) {
  return h('div', { class: 'card', id: 'webhook-secret-once' }, h('h3', {}, 'Signing secret — shown this once'),
    h('p', {}, 'Verify each delivery\'s ssogate-signature header (t=…, v1=HMAC-SHA256 of "t.body") with it.'),
    h('div', { class: 'secret', id: 'webhook-secret' }, w.secret));
}

async function webhooksSection(a) {
  const hooks = (await api('GET', `/applications/${enc(a.id)}/webhooks`)).data;
  const deliveries = (await api('GET', `/applications/${enc(a.id)}/webhook-deliveries?limit=20`)).data;
  const shown = h('div', {});
  return [
    shown,
    hooks.length ? h('table', { id: 'webhooks' }, h('tr', {}, h('th', {}, 'URL'), h('th', {}, 'Events'), h('th', {}, '')),
      hooks.map((w) => h('tr', {}, h('td', {}, h('code', {}, w.url)), h('td', {}, w.events.length ? w.events.join(', ') : 'all'),
        h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => confirmThen('Issue a new signing secret?', async () => {
          shown.replaceChildren(webhookSecretShownOnce(await api('POST', `/applications/${enc(a.id)}/webhooks/${enc(w.id)}/rotate-secret`)));
        }) }, 'Rotate secret'), ' ',
        h('button', { type: 'button', class: 'link', onclick: () => confirmThen(`Stop sending events to ${w.url}?`, async () => {
          await api('DELETE', `/applications/${enc(a.id)}/webhooks/${enc(w.id)}`); route();
        }) }, 'Delete'))))) : h('p', { class: 'muted' }, 'No webhook: the application can still poll GET /app/v1/events with its client credentials.'),
    form({
      id: 'new-webhook',
      fields: [
        { name: 'url', label: 'Endpoint URL', value: '', placeholder: 'https://app.example.com/ssogate/events' },
        { name: 'events', label: 'Event types', value: '', hint: 'Empty: every event. Or e.g. dsync.user.deactivated, dsync.group.user_added, session.ended' },
      ],
      submitLabel: 'Add webhook',
      submit: async (v) => { shown.replaceChildren(webhookSecretShownOnce(await api('POST', `/applications/${enc(a.id)}/webhooks`, { url: v.url, events: words(v.events) }))); },
    }),
    h('h3', {}, 'Recent deliveries'),
    deliveries.length ? h('table', { id: 'deliveries' }, h('tr', {}, h('th', {}, 'Event'), h('th', {}, 'Status'), h('th', {}, 'Attempts'), h('th', {}, 'Last answer'), h('th', {}, 'Next attempt')),
      deliveries.map((d) => h('tr', {}, h('td', {}, d.event), h('td', {}, d.status), h('td', {}, d.attempts),
        h('td', {}, d.last_status ?? '', d.last_error ? ` ${d.last_error}` : ''), h('td', {}, when(d.next_attempt_at))))) : h('p', { class: 'muted' }, 'Nothing delivered yet.'),
  ];
}

// ---------- Signing keys ----------

async function signingKeysPage() {
  const keys = await api('GET', '/signing-keys');
  return [
    h('h1', {}, 'Signing keys'),
    h('p', { class: 'muted' }, 'Keys ssogate signs ID tokens with. A rotated key stays published until the tokens it signed expire.'),
    h('table', { id: 'signing-keys' }, h('tr', {}, h('th', {}, 'Key id'), h('th', {}, 'Algorithm'), h('th', {}, 'Status'), h('th', {}, 'Created')),
      keys.map((k) => h('tr', {}, h('td', {}, h('code', {}, k.kid)), h('td', {}, k.alg), h('td', {}, k.active ? 'active' : `retired ${when(k.retired_at)}`), h('td', {}, when(k.created_at))))),
    h('div', { class: 'actions' }, ['RS256', 'ES256'].map((alg) => h('button', { type: 'button', class: 'secondary', onclick: () => confirmThen(`Rotate the ${alg} key?`, async () => { await api('POST', '/signing-keys/rotate', { alg }); route(); }) }, `Rotate ${alg}`))),
  ];
}

// ---------- Routing ----------

const routes = [
  [/^\/organizations$/, organizationsPage],
  [/^\/organizations\/([^/]+)$/, organizationPage],
  [/^\/organizations\/([^/]+)\/login$/, loginPage],
  [/^\/organizations\/([^/]+)\/users$/, usersPage],
  [/^\/organizations\/([^/]+)\/groups$/, groupsPage],
  [/^\/organizations\/([^/]+)\/directories$/, directoriesPage],
  [/^\/organizations\/([^/]+)\/events$/, (slug, q) => eventsPage(slug, q)],
  [/^\/connections\/([^/]+)$/, connectionRedirect],
  [/^\/users\/([^/]+)$/, userPage],
  [/^\/applications$/, applicationsPage],
  [/^\/applications\/([^/]+)$/, applicationPage],
  [/^\/events$/, (q) => eventsPage(null, q)],
  [/^\/signing-keys$/, signingKeysPage],
];

async function route() {
  if (!session) return showSignIn();
  const [path, query = ''] = (location.hash.slice(1) || '/organizations').split('?');
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('current', path.startsWith(a.getAttribute('href').slice(1)));
  const found = routes.find(([re]) => re.test(path));
  if (!found) { location.hash = '#/organizations'; return; }
  const args = path.match(found[0]).slice(1).map(decodeURIComponent);
  try {
    const content = await found[1](...args, query);
    main.replaceChildren(...content.flat().filter(Boolean));
    document.title = `${main.querySelector('h1')?.textContent ?? 'ssogate'} · ssogate console`;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    main.replaceChildren(h('h1', {}, 'Something went wrong'), banner('err', err.message));
  }
}

async function start() {
  document.getElementById('nav').hidden = false;
  await route();
}

document.getElementById('sign-out').addEventListener('click', async () => {
  await fetch('/admin/session', { method: 'DELETE' });
  session = null;
  showSignIn();
});
window.addEventListener('hashchange', route);

const resp = await fetch('/admin/session');
if (resp.ok) { session = await resp.json(); start(); } else showSignIn();
