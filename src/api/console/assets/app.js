// idnode web console. Hand-written, no build step, no dependencies.
//
// Rules kept everywhere below:
// - data from the node is put into the page with textContent or as attribute values of
//   elements made here (never innerHTML), and only http(s) URLs become links;
// - the token lives in sessionStorage and travels only in the Authorization header;
// - no inline script or style (the Content-Security-Policy forbids both).
'use strict';

(() => {
  const TOKEN = 'idnode.token';
  const SESSION = 'idnode.session';
  const LANG = 'idnode.lang';
  const RESERVED = ['api', 'console', 'metrics', 'healthz'];
  let strings = {};
  let lang = localStorage.getItem(LANG) === 'en' ? 'en' : 'zh-CN';
  let timer = null;

  // ---- strings -------------------------------------------------------------------------

  function t(key, ...args) {
    let s = Object.prototype.hasOwnProperty.call(strings, key) ? strings[key] : key;
    args.forEach((a, i) => { s = s.split('{' + i + '}').join(String(a)); });
    return s;
  }

  async function loadStrings() {
    const r = await fetch('/console/assets/i18n/' + lang + '.json', { cache: 'no-cache' });
    strings = await r.json();
    document.documentElement.lang = lang;
    document.title = t('brand');
    for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
    const toggle = document.getElementById('lang');
    toggle.textContent = lang === 'en' ? '中文' : 'English';
    toggle.lang = lang === 'en' ? 'zh-CN' : 'en';
  }

  // ---- DOM -----------------------------------------------------------------------------

  // el('a', {href: u, class: 'x', onclick: f}, 'text', child...): text children become text
  // nodes, so data never becomes markup.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (v === true) e.setAttribute(k, '');
      else e.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return e;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    for (const c of children) e.append(typeof c === 'string' ? document.createTextNode(c) : c);
    return e;
  }

  const app = () => document.getElementById('app');

  function show(...nodes) {
    const root = app();
    root.replaceChildren(...nodes);
  }

  function notice(kind, text) {
    return el('div', { class: 'notice ' + kind, role: kind === 'error' ? 'alert' : 'status' }, text);
  }

  // A link only for http(s) URLs; anything else stays text.
  function safeLink(text) {
    try {
      const u = new URL(text);
      if (u.protocol === 'http:' || u.protocol === 'https:') {
        return el('a', { href: u.href, rel: 'noopener noreferrer nofollow', target: '_blank', class: 'value-link' }, text);
      }
    } catch (_) { /* not a URL */ }
    return document.createTextNode(text);
  }

  function time(secs) {
    if (!secs) return '';
    return new Date(secs * 1000).toLocaleString(lang === 'en' ? 'en-GB' : 'zh-CN', { hour12: false });
  }

  function number(n) {
    return Number(n || 0).toLocaleString(lang === 'en' ? 'en-US' : 'zh-CN');
  }

  // ---- identifiers and links -----------------------------------------------------------

  function splitId(text) {
    const i = text.indexOf('/');
    return i < 0 ? null : [text.slice(0, i), text.slice(i + 1)];
  }

  function encodeSuffix(s) {
    return s.split('/').map(encodeURIComponent).join('/');
  }

  // The console path of an identifier's public page.
  function idPath(text) {
    const parts = splitId(text);
    if (!parts || RESERVED.includes(parts[0]) || parts[0] === '') {
      return '/?id=' + encodeURIComponent(text);
    }
    return '/' + parts[0] + '/' + encodeSuffix(parts[1]);
  }

  function qrPath(text, format) {
    const parts = splitId(text);
    return '/console/qr/' + parts[0] + '/' + encodeSuffix(parts[1]) + '?format=' + format;
  }

  // ---- the node's API ------------------------------------------------------------------

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN);
    if (token) headers.Authorization = 'Bearer ' + token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch('/console/api' + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
    let data = null;
    try { data = await r.json(); } catch (_) { data = null; }
    if (!r.ok) {
      const e = new Error((data && data.message) || r.statusText || String(r.status));
      e.status = r.status;
      e.kind = data && data.error;
      throw e;
    }
    return data;
  }

  function session() {
    try { return JSON.parse(sessionStorage.getItem(SESSION) || 'null'); } catch (_) { return null; }
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN);
    sessionStorage.removeItem(SESSION);
    location.assign('/');
  }

  function updateHeader() {
    const s = session();
    const who = document.getElementById('who');
    const out = document.getElementById('signout');
    if (s) {
      who.textContent = (s.role === 'admin' ? t('role.admin') : s.name) + ' · ' + s.prefix;
      out.hidden = false;
    } else {
      who.textContent = '';
      out.hidden = true;
    }
  }

  // The page needs a signed-in role; otherwise go to the sign-in page (nothing of the
  // page is drawn, and its API calls would be refused anyway).
  function requireRole(role) {
    const s = session();
    if (!s || !sessionStorage.getItem(TOKEN)) {
      location.replace('/console/signin?next=' + encodeURIComponent(location.pathname));
      return null;
    }
    if (s.role !== role) {
      show(el('h1', {}, t('denied.title')), notice('error', t(role === 'admin' ? 'denied.admin' : 'denied.enterprise')),
        el('button', { onclick: signOut, type: 'button' }, t('signout')));
      return null;
    }
    return s;
  }

  // ---- public pages --------------------------------------------------------------------

  function lookupForm(value) {
    const input = el('input', {
      id: 'lookup-input', name: 'identifier', class: 'wide mono', required: true,
      placeholder: t('lookup.placeholder'), value: value || '', autocomplete: 'off',
    });
    return el('form', {
      id: 'lookup-form', class: 'inline',
      onsubmit: (ev) => {
        ev.preventDefault();
        const text = input.value.trim();
        if (text) location.assign(idPath(text));
      },
    }, input, el('button', { type: 'submit', id: 'lookup-submit' }, t('lookup.submit')));
  }

  function pageLookup() {
    show(
      el('h1', { id: 'page-title' }, t('lookup.title')),
      el('div', { class: 'card' }, el('p', { class: 'muted' }, t('lookup.intro')), lookupForm('')),
    );
  }

  async function pageIdentifier(text) {
    const title = el('h1', { id: 'page-title', class: 'mono' }, text);
    const body = el('div', { id: 'resolution' }, el('p', { class: 'muted' }, t('loading')));
    show(title, el('div', { class: 'card' }, lookupForm(text)), body);
    let r;
    try {
      r = await api('GET', '/resolve?id=' + encodeURIComponent(text));
    } catch (e) {
      let heading = 'error.unavailable';
      if (e.status === 400) heading = 'error.invalid';
      else if (e.status === 404) heading = 'error.notfound';
      body.replaceChildren(el('div', { class: 'card', id: 'resolve-error', 'data-kind': e.kind || '' },
        el('h2', {}, t(heading)),
        el('p', {}, t(heading + '.help')),
        el('p', { class: 'muted mono' }, e.message)));
      return;
    }
    const rows = r.values.map((v) => el('tr', { class: 'value' },
      el('td', {}, String(v.index)),
      el('td', {}, v.display_name || v.type),
      el('td', { class: 'mono' }, v.type),
      el('td', { class: 'data' }, v.format === 'binary' ? el('span', { class: 'muted' }, t('value.binary')) : safeLink(v.data)),
      el('td', { class: 'muted' }, time(v.timestamp))));
    body.replaceChildren(
      r.route === 'forwarded' ? notice('info', t('resolve.forwarded', r.node_prefix)) : '',
      el('div', { class: 'card' },
        el('h2', {}, t('resolve.values')),
        r.template ? el('p', { class: 'muted' }, t('resolve.template', r.template.name, r.template.identifier)) : '',
        rows.length
          ? el('table', { id: 'values' },
            el('thead', {}, el('tr', {}, ['value.index', 'value.name', 'value.type', 'value.data', 'value.time'].map((k) => el('th', {}, t(k))))),
            el('tbody', {}, rows))
          : notice('info', t('resolve.novalues'))),
      el('div', { class: 'card' },
        el('h2', {}, t('qr.title')),
        el('div', { class: 'qr' },
          el('img', { id: 'qr', src: qrPath(r.identifier, 'svg'), alt: t('qr.alt', r.identifier) }),
          el('div', {},
            el('p', {}, t('qr.link')),
            el('p', { class: 'mono' }, el('a', { id: 'qr-link', href: r.link, rel: 'noopener noreferrer' }, r.link)),
            el('p', {},
              el('a', { id: 'qr-png', href: qrPath(r.identifier, 'png'), download: 'qr.png' }, t('qr.png')), ' · ',
              el('a', { href: qrPath(r.identifier, 'svg'), download: 'qr.svg' }, t('qr.svg')))))));
  }

  // ---- sign in ------------------------------------------------------------------------

  function pageSignin() {
    const input = el('input', { id: 'token', type: 'password', class: 'wide mono', required: true, autocomplete: 'off', placeholder: 'idn_…' });
    const msg = el('div', {});
    const form = el('form', {
      id: 'signin-form', class: 'inline',
      onsubmit: async (ev) => {
        ev.preventDefault();
        sessionStorage.setItem(TOKEN, input.value.trim());
        try {
          const s = await api('GET', '/session');
          sessionStorage.setItem(SESSION, JSON.stringify(s));
          const next = new URLSearchParams(location.search).get('next');
          const dest = next && next.startsWith('/console/') ? next
            : (s.role === 'admin' ? '/console/operator' : '/console/enterprise');
          location.assign(dest);
        } catch (e) {
          sessionStorage.removeItem(TOKEN);
          sessionStorage.removeItem(SESSION);
          msg.replaceChildren(notice('error', t('signin.failed', e.message)));
        }
      },
    }, input, el('button', { type: 'submit', id: 'signin-submit' }, t('signin.submit')));
    show(el('h1', { id: 'page-title' }, t('signin.title')),
      el('div', { class: 'card' }, el('p', { class: 'muted' }, t('signin.intro')), form, msg));
  }

  // ---- enterprise pages ---------------------------------------------------------------

  const ENTERPRISE_TABS = ['register', 'upload', 'list', 'grants', 'usage'];

  function tabs(names, current, prefix) {
    return el('nav', { class: 'tabs' }, names.map((n) => el('a', {
      href: '#' + n, id: 'tab-' + n, class: n === current ? 'active' : '',
    }, t(prefix + n))));
  }

  function pageEnterprise() {
    const s = requireRole('enterprise');
    if (!s) return;
    const hash = location.hash.slice(1);
    const eq = hash.indexOf('=');
    const view = eq < 0 ? hash : hash.slice(0, eq);
    const arg = eq < 0 ? '' : hash.slice(eq + 1);
    const current = ENTERPRISE_TABS.includes(view) ? view : (view === 'record' ? 'list' : 'register');
    const content = el('div', { id: 'view' });
    show(el('h1', { id: 'page-title' }, t('enterprise.title', s.name)), tabs(ENTERPRISE_TABS, current, 'tab.'), content);
    if (view === 'record' && arg) return viewRecord(content, s, decodeURIComponent(arg));
    return ({ register: viewRegister, upload: viewUpload, list: viewList, grants: viewGrants, usage: viewUsage })[current](content, s);
  }

  // Mirrors template.rs: the page checks what the node checks again.
  const TEXT = new TextEncoder();
  function bytes(s) { return TEXT.encode(s).length; }
  function isDate(s) {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s);
    if (!m) return false;
    const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
    const days = [31, (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    return mo >= 1 && mo <= 12 && d >= 1 && d <= days[mo - 1];
  }
  const CHECKS = {
    string: () => true,
    integer: (s) => /^[+-]?\d{1,19}$/.test(s),
    number: (s) => /^[0-9.eE+-]+$/.test(s) && Number.isFinite(Number(s)),
    boolean: (s) => s === 'true' || s === 'false',
    date: isDate,
    datetime: (s) => isDate(s.slice(0, 10)) && /^.{10}[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$/.test(s),
    url: (s) => /^https?:\/\/[^/ ][^ ]*$/.test(s),
  };

  // The message for an attribute's text, or null when it passes.
  function checkAttribute(a, text) {
    const name = a.display_name || a.key;
    if (text === '') return a.required ? t('check.required', name) : null;
    if (!CHECKS[a.value_type](text)) return t('check.type', name, t('type.' + a.value_type));
    const n = bytes(text);
    const min = a.min_len ?? 0;
    const max = a.max_len ?? Infinity;
    if (n < min || n > max) return t('check.length', name, min, max === Infinity ? '∞' : max, n);
    return null;
  }

  // The loosest visibility a risk level allows (high → private, medium → partner).
  const LOOSEST = { high: 'private', medium: 'partner', low: 'public' };

  function classificationSelect(name, value) {
    return el('select', { name, class: 'classification' }, ['public', 'partner', 'private'].map((c) =>
      el('option', { value: c, selected: c === (value || 'public') }, t('class.' + c))));
  }

  function inputFor(a) {
    const attrs = { name: 'attr-' + a.key, id: 'attr-' + a.key, required: a.required };
    switch (a.value_type) {
      case 'integer': return el('input', Object.assign(attrs, { type: 'text', inputmode: 'numeric' }));
      case 'number': return el('input', Object.assign(attrs, { type: 'text', inputmode: 'decimal' }));
      case 'date': return el('input', Object.assign(attrs, { type: 'text', placeholder: 'YYYY-MM-DD' }));
      case 'datetime': return el('input', Object.assign(attrs, { type: 'text', placeholder: '2025-03-01T08:00:00Z' }));
      case 'url': return el('input', Object.assign(attrs, { type: 'text', placeholder: 'https://' }));
      case 'boolean': return el('select', attrs, el('option', { value: '' }, ''), el('option', { value: 'true' }, 'true'), el('option', { value: 'false' }, 'false'));
      default: return el('input', Object.assign(attrs, { type: 'text' }));
    }
  }

  async function viewRegister(content, s) {
    content.replaceChildren(el('p', { class: 'muted' }, t('loading')));
    const { templates } = await api('GET', '/templates');
    const select = el('select', { id: 'reg-template' },
      el('option', { value: '' }, t('register.notemplate')),
      templates.map((tp) => el('option', { value: tp.identifier }, tp.name + ' (' + tp.identifier + ')')));
    // The enterprise's industry's template first, else the first one.
    const mine = templates.find((tp) => s.industry_code && tp.industry_code === s.industry_code) || templates[0];
    if (mine) select.value = mine.identifier;
    const suffix = el('input', { id: 'reg-suffix', class: 'wide mono', required: true, placeholder: 'BAT-2025-000001', autocomplete: 'off' });
    const url = el('input', { id: 'reg-url', class: 'wide', placeholder: 'https://' });
    const fields = el('div', { id: 'reg-fields' });
    const result = el('div', { id: 'reg-result' });
    let attributes = [];
    const draw = () => {
      const tp = templates.find((x) => x.identifier === select.value);
      attributes = tp ? tp.attributes : [];
      fields.replaceChildren(...attributes.map((a) => el('div', { class: 'field', 'data-key': a.key },
        el('label', { for: 'attr-' + a.key }, a.display_name || a.key, a.required ? el('span', { class: 'req' }, '*') : '',
          el('span', { class: 'key mono' }, a.key + ' · ' + t('type.' + a.value_type))),
        inputFor(a), classificationSelect('class-' + a.key, LOOSEST[a.risk]), el('div', { class: 'msg' }))));
    };
    select.addEventListener('change', draw);
    draw();
    const form = el('form', {
      id: 'reg-form', novalidate: true,
      onsubmit: async (ev) => {
        ev.preventDefault();
        result.replaceChildren();
        let bad = false;
        const values = [];
        if (url.value.trim()) {
          if (!CHECKS.url(url.value.trim())) {
            result.replaceChildren(notice('error', t('check.type', 'URL', 'URL')));
            return;
          }
          values.push({ index: 1, type: 'URL', data: url.value.trim() });
        }
        attributes.forEach((a, i) => {
          const box = fields.querySelector('[data-key="' + CSS.escape(a.key) + '"]');
          const text = box.querySelector('[name="attr-' + CSS.escape(a.key) + '"]').value.trim();
          const problem = checkAttribute(a, text);
          box.classList.toggle('error', !!problem);
          box.querySelector('.msg').textContent = problem || '';
          if (problem) bad = true;
          else if (text !== '') {
            values.push({ index: 2 + i, type: a.key, data: text, classification: box.querySelector('select.classification').value });
          }
        });
        if (!suffix.value.trim()) {
          result.replaceChildren(notice('error', t('check.required', t('register.suffix'))));
          return;
        }
        if (bad) {
          result.replaceChildren(notice('error', t('register.fix')));
          return;
        }
        if (select.value) values.push({ index: 1000, type: 'TEMPLATE_ID', data: select.value });
        if (!values.length) {
          result.replaceChildren(notice('error', t('register.novalues')));
          return;
        }
        const identifier = s.prefix + '/' + suffix.value.trim();
        try {
          await api('POST', '/record', { identifier, values });
          result.replaceChildren(el('div', { class: 'notice ok', id: 'reg-ok' }, t('register.done', identifier), ' ',
            el('a', { href: '#record=' + encodeURIComponent(identifier) }, t('register.view')), ' · ',
            el('a', { href: idPath(identifier) }, t('register.public'))));
          suffix.value = '';
        } catch (e) {
          result.replaceChildren(el('div', { class: 'notice error', id: 'reg-error' }, t('register.refused', e.message)));
        }
      },
    },
    el('div', { class: 'field' }, el('label', { for: 'reg-suffix' }, t('register.suffix'), el('span', { class: 'req' }, '*')),
      el('div', { class: 'row' }, el('span', { class: 'mono' }, s.prefix + '/'), suffix), el('span')),
    el('div', { class: 'field' }, el('label', { for: 'reg-template' }, t('register.template')), select, el('span')),
    el('div', { class: 'field' }, el('label', { for: 'reg-url' }, 'URL'), url, el('span')),
    fields,
    el('div', { class: 'row' }, el('button', { type: 'submit', id: 'reg-submit' }, t('register.submit'))));
    content.replaceChildren(el('div', { class: 'card' }, el('h2', {}, t('register.title')), result, form));
  }

  // The first CSV field of a line (the identifier), honouring quotes.
  function csvFirst(line) {
    if (!line.startsWith('"')) {
      const i = line.indexOf(',');
      return i < 0 ? line : line.slice(0, i);
    }
    let out = '';
    for (let i = 1; i < line.length; i++) {
      if (line[i] === '"') {
        if (line[i + 1] === '"') { out += '"'; i++; } else return out;
      } else out += line[i];
    }
    return out;
  }

  function csvField(s) {
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }

  // Cuts `lines` into chunks of at most `maxRows` lines and `maxBytes` bytes; CSV rows of
  // one identifier stay in one chunk (unless one identifier alone is larger).
  function chunks(lines, csv, maxRows, maxBytes) {
    const out = [];
    let start = 0;
    while (start < lines.length) {
      let end = start;
      let size = 0;
      while (end < lines.length) {
        const n = bytes(lines[end]) + 1;
        if (end > start && (end - start >= maxRows || size + n > maxBytes)) {
          if (!csv) break;
          // Step back to the start of the identifier the cut would split.
          let cut = end;
          const id = csvFirst(lines[end]);
          while (cut > start && csvFirst(lines[cut - 1]) === id) cut--;
          if (cut > start) end = cut;
          break;
        }
        size += n;
        end++;
      }
      out.push([start, end]);
      start = end;
    }
    return out;
  }

  function viewUpload(content, s) {
    const file = el('input', { type: 'file', id: 'upload-file', accept: '.csv,.jsonl,.json,.txt' });
    const progress = el('progress', { id: 'upload-progress', max: 100, value: 0 });
    const status = el('p', { id: 'upload-status', class: 'muted' }, t('upload.idle'));
    const summary = el('div', { id: 'upload-summary' });
    const errors = el('div', { id: 'upload-errors' });
    const go = el('button', { type: 'button', id: 'upload-submit' }, t('upload.submit'));
    go.addEventListener('click', async () => {
      const f = file.files[0];
      if (!f) { status.textContent = t('upload.nofile'); return; }
      go.disabled = true;
      summary.replaceChildren();
      errors.replaceChildren();
      const csv = /\.csv$/i.test(f.name);
      const text = await f.text();
      const lines = text.split(/\r?\n/);
      if (lines.length && lines[lines.length - 1] === '') lines.pop();
      // A third of the body limit: JSON escaping of the chunk's text may grow it.
      const parts = chunks(lines, csv, 500, Math.max(4096, Math.floor(s.max_body_bytes / 3)));
      const failed = [];
      let registered = 0;
      let present = 0;
      let requests = 0;
      try {
        for (const [a, b] of parts) {
          const r = await api('POST', '/batch', { format: csv ? 'csv' : 'jsonl', first_line: a + 1, text: lines.slice(a, b).join('\n') });
          requests++;
          for (const row of r.rows) {
            if (row.outcome === 'registered') registered++;
            else if (row.outcome === 'already_present') present++;
            else failed.push(row);
          }
          progress.value = Math.round((100 * b) / lines.length);
          status.textContent = t('upload.progress', b, lines.length, requests);
        }
        progress.value = 100;
      } catch (e) {
        summary.append(notice('error', t('upload.stopped', e.message)));
      }
      go.disabled = false;
      summary.append(el('div', { class: failed.length ? 'notice error' : 'notice ok', id: 'upload-result', 'data-registered': registered, 'data-failed': failed.length, 'data-requests': requests },
        t('upload.result', registered, present, failed.length, requests)));
      if (failed.length) {
        const download = el('a', { id: 'upload-download', download: 'errors.csv' }, t('upload.download'));
        const csvText = 'line,identifier,error\n' + failed.map((r) => [String(r.line), r.identifier, r.error || ''].map(csvField).join(',')).join('\n') + '\n';
        download.href = URL.createObjectURL(new Blob([csvText], { type: 'text/csv' }));
        errors.replaceChildren(el('h2', {}, t('upload.errors')), download,
          el('table', { id: 'upload-error-table' },
            el('thead', {}, el('tr', {}, el('th', {}, t('upload.line')), el('th', {}, t('upload.identifier')), el('th', {}, t('upload.error')))),
            el('tbody', {}, failed.map((r) => el('tr', { class: 'upload-error', 'data-line': r.line },
              el('td', {}, String(r.line)), el('td', { class: 'mono' }, r.identifier), el('td', {}, r.error || ''))))));
      }
    });
    content.replaceChildren(el('div', { class: 'card' },
      el('h2', {}, t('upload.title')),
      el('p', { class: 'muted' }, t('upload.help')),
      el('pre', { class: 'mono muted' }, 'identifier,index,type,data,ttl,classification\n' + s.prefix + '/A-1,1,URL,https://example.cn/a/1,,public'),
      el('div', { class: 'row' }, file, go), progress, status, summary, errors));
  }

  async function viewList(content, s) {
    const q = el('input', { id: 'list-q', class: 'wide mono', placeholder: t('list.search') });
    const table = el('div', { id: 'list' });
    const pager = el('div', { class: 'row' });
    const cursors = [null];
    let page = 0;
    const load = async () => {
      const params = new URLSearchParams({ size: '20' });
      if (q.value.trim()) params.set('q', q.value.trim());
      if (cursors[page]) params.set('cursor', cursors[page]);
      let r;
      try {
        r = await api('GET', '/records?' + params.toString());
      } catch (e) {
        table.replaceChildren(notice('error', e.message));
        return;
      }
      cursors[page + 1] = r.next_cursor;
      table.replaceChildren(
        el('p', { class: 'muted', id: 'list-total' }, t('list.total', number(r.total))),
        r.identifiers.length
          ? el('table', { id: 'list-table' },
            el('thead', {}, el('tr', {}, el('th', {}, t('list.identifier')), el('th', {}, t('list.actions')))),
            el('tbody', {}, r.identifiers.map((id) => el('tr', { class: 'listed' },
              el('td', { class: 'mono' }, el('a', { href: '#record=' + encodeURIComponent(id) }, id)),
              el('td', {}, el('a', { href: idPath(id) }, t('list.public')))))))
          : notice('info', t('list.empty')));
      pager.replaceChildren(
        el('button', { type: 'button', class: 'plain', id: 'list-prev', disabled: page === 0, onclick: () => { page--; load(); } }, t('list.prev')),
        el('span', { class: 'muted' }, t('list.page', page + 1)),
        el('button', { type: 'button', class: 'plain', id: 'list-next', disabled: !r.next_cursor, onclick: () => { page++; load(); } }, t('list.next')));
    };
    content.replaceChildren(el('div', { class: 'card' },
      el('h2', {}, t('list.title')),
      el('form', { class: 'inline', id: 'list-form', onsubmit: (ev) => { ev.preventDefault(); page = 0; cursors.length = 1; load(); } },
        q, el('button', { type: 'submit' }, t('list.go'))),
      table, pager));
    await load();
  }

  async function viewRecord(content, s, id) {
    content.replaceChildren(el('p', { class: 'muted' }, t('loading')));
    let r;
    try {
      r = await api('GET', '/record?id=' + encodeURIComponent(id));
    } catch (e) {
      content.replaceChildren(notice('error', e.message));
      return;
    }
    const msg = el('div', { id: 'record-msg' });
    const tbody = el('tbody', {});
    const row = (v) => el('tr', { class: 'record-value' },
      el('td', {}, el('input', { name: 'index', value: v.index, size: 5, class: 'mono' })),
      el('td', {}, el('input', { name: 'type', value: v.type, class: 'mono' }), v.display_name ? el('div', { class: 'muted' }, v.display_name) : ''),
      el('td', { class: 'data' }, el('input', { name: 'data', value: v.data, class: 'wide' })),
      el('td', {}, classificationSelect('classification', v.classification),
        v.risk || v.domain ? el('div', { class: 'muted' }, [v.domain ? t('domain.' + v.domain) : '', v.risk ? t('risk.' + v.risk) : ''].filter(Boolean).join(' · ')) : ''),
      el('td', { class: 'muted' }, time(v.timestamp)),
      el('td', {}, el('button', { type: 'button', class: 'plain', onclick: (ev) => ev.target.closest('tr').remove() }, t('record.remove'))));
    r.values.forEach((v) => tbody.append(row(v)));
    const save = async () => {
      const values = [...tbody.querySelectorAll('tr')].map((tr) => {
        const get = (n) => tr.querySelector('[name="' + n + '"]').value.trim();
        const v = { index: Number(get('index')), type: get('type'), data: get('data'), classification: get('classification') };
        const old = r.values.find((x) => x.index === v.index);
        if (old && old.format && old.format !== 'string') v.format = old.format;
        if (old && old.ttl) v.ttl = old.ttl;
        // The data domain and risk level are kept as they are (the node checks them).
        if (old && old.domain) v.domain = old.domain;
        if (old && old.risk) v.risk = old.risk;
        return v;
      });
      try {
        await api('PUT', '/record?id=' + encodeURIComponent(id), { values });
        msg.replaceChildren(notice('ok', t('record.saved')));
      } catch (e) {
        msg.replaceChildren(notice('error', e.message));
      }
    };
    const del = el('button', { type: 'button', class: 'danger', id: 'record-delete' }, t('record.delete'));
    del.addEventListener('click', async () => {
      if (del.dataset.armed !== '1') {
        del.dataset.armed = '1';
        del.textContent = t('record.confirm');
        return;
      }
      try {
        await api('DELETE', '/record?id=' + encodeURIComponent(id));
        location.hash = '#list';
      } catch (e) {
        msg.replaceChildren(notice('error', e.message));
      }
    });
    content.replaceChildren(el('div', { class: 'card' },
      el('h2', { class: 'mono', id: 'record-id' }, r.identifier),
      r.template ? el('p', { class: 'muted' }, t('resolve.template', r.template.name, r.template.identifier)) : '',
      el('table', { id: 'record-table' },
        el('thead', {}, el('tr', {}, ['value.index', 'value.type', 'value.data', 'value.class', 'value.time', ''].map((k) => el('th', {}, k ? t(k) : '')))),
        tbody),
      el('div', { class: 'row' },
        el('button', { type: 'button', class: 'plain', onclick: () => tbody.append(row({ index: '', type: '', data: '', classification: 'public' })) }, t('record.add')),
        el('button', { type: 'button', id: 'record-save', onclick: save }, t('record.save')),
        del,
        el('a', { href: idPath(r.identifier) }, t('register.public'))),
      msg));
  }

  async function viewGrants(content, s) {
    const list = el('div', {});
    const msg = el('div', {});
    const scope = el('input', { class: 'mono', value: s.prefix, id: 'grant-scope' });
    const grantee = el('input', { class: 'mono', placeholder: '88.101.8', id: 'grant-grantee' });
    const load = async () => {
      const r = await api('GET', '/grants');
      list.replaceChildren(r.grants.length
        ? el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, t('grants.scope')), el('th', {}, t('grants.grantee')), el('th', {}, t('grants.since')), el('th', {}))),
          el('tbody', {}, r.grants.map((g) => el('tr', {},
            el('td', { class: 'mono' }, g.scope), el('td', { class: 'mono' }, g.grantee), el('td', {}, time(g.granted_at)),
            el('td', {}, el('button', {
              type: 'button', class: 'plain',
              onclick: async () => {
                try {
                  await api('DELETE', '/grants?' + new URLSearchParams({ scope: g.scope, grantee: g.grantee }).toString());
                  load();
                } catch (e) { msg.replaceChildren(notice('error', e.message)); }
              },
            }, t('grants.revoke')))))))
        : notice('info', t('grants.none')));
    };
    content.replaceChildren(el('div', { class: 'card' },
      el('h2', {}, t('grants.title')), el('p', { class: 'muted' }, t('grants.help')),
      el('form', {
        class: 'inline',
        onsubmit: async (ev) => {
          ev.preventDefault();
          try {
            await api('POST', '/grants', { scope: scope.value.trim(), grantee: grantee.value.trim() });
            msg.replaceChildren(notice('ok', t('grants.done')));
            load();
          } catch (e) { msg.replaceChildren(notice('error', e.message)); }
        },
      }, scope, grantee, el('button', { type: 'submit' }, t('grants.add'))),
      msg, list));
    await load();
  }

  function meter(label, used, max, id) {
    return el('div', { class: 'stat', id },
      el('div', { class: 'label' }, label),
      el('div', { class: 'number' }, number(used), el('span', { class: 'sub' }, ' / ' + (max == null ? t('usage.unlimited') : number(max)))),
      max == null ? '' : el('progress', { max: Math.max(1, max), value: Math.min(used, max) }));
  }

  async function viewUsage(content) {
    const u = await api('GET', '/usage');
    content.replaceChildren(el('div', { class: 'card' },
      el('h2', {}, t('usage.title')),
      el('div', { class: 'grid' },
        meter(t('usage.total'), u.registered, u.quota.max_registrations, 'usage-total'),
        meter(t('usage.today'), u.registered_today, u.quota.max_registrations_per_day, 'usage-today'),
        el('div', { class: 'stat' }, el('div', { class: 'label' }, t('usage.rate')),
          el('div', { class: 'number' }, u.quota.max_requests_per_second == null ? t('usage.unlimited') : number(u.quota.max_requests_per_second) + ' /s')))));
  }

  // ---- operator pages -----------------------------------------------------------------

  function pageOperator() {
    const s = requireRole('admin');
    if (!s) return;
    const view = location.hash.slice(1) === 'enterprises' ? 'enterprises' : 'dashboard';
    const content = el('div', { id: 'view' });
    show(el('h1', { id: 'page-title' }, t('operator.title')), tabs(['dashboard', 'enterprises'], view, 'optab.'), content);
    if (view === 'enterprises') return viewEnterprises(content);
    const refresh = () => viewDashboard(content).catch((e) => content.replaceChildren(notice('error', e.message)));
    refresh();
    timer = setInterval(refresh, 10000);
  }

  function stat(label, value, sub, id) {
    return el('div', { class: 'card stat', id }, el('div', { class: 'label' }, label),
      el('div', { class: 'number' }, value), sub ? el('div', { class: 'sub' }, sub) : '');
  }

  // A line chart of per-minute series, drawn as SVG elements (no library).
  function chart(series, minute) {
    const W = 960; const H = 240; const L = 48; const B = 28; const T = 10; const R = 10;
    // A maximum of four even steps, so the axis labels are whole numbers.
    const max = 4 * Math.ceil(Math.max(1, ...series.flatMap((s) => s.per_minute)) / 4);
    const x = (i) => L + ((W - L - R) * i) / 59;
    const y = (v) => H - B - ((H - B - T) * v) / max;
    const g = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': t('dash.rate') });
    for (let k = 0; k <= 4; k++) {
      const v = (max * k) / 4;
      g.append(svg('line', { class: 'grid-line', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      g.append(svg('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, String(Math.round(v))));
    }
    for (const i of [0, 15, 30, 45, 59]) {
      const d = new Date((minute - 59 + i) * 60000);
      const label = String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0');
      g.append(svg('text', { x: x(i), y: H - 8, 'text-anchor': 'middle' }, label));
    }
    g.append(svg('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
    for (const s of series) {
      const points = s.per_minute.map((v, i) => x(i).toFixed(1) + ',' + y(v).toFixed(1)).join(' ');
      g.append(svg('polyline', { class: 's-' + s.interface, points, 'data-interface': s.interface, 'data-total': s.per_minute.reduce((a, b) => a + b, 0) }));
    }
    return el('div', { class: 'chart', id: 'rate-chart' }, g,
      el('div', { class: 'legend' }, series.map((s) => el('span', { class: 'k-' + s.interface }, s.interface.toUpperCase()))));
  }

  async function viewDashboard(content) {
    const d = await api('GET', '/dashboard');
    const f = d.federation;
    const fed = f.error
      ? stat(t('dash.goal'), '—', t('dash.fed.down', f.error), 'dash-goal')
      : el('div', { class: 'card stat', id: 'dash-goal' },
        el('div', { class: 'label' }, t('dash.goal')),
        el('div', { class: 'number' }, (f.progress * 100).toFixed(6) + '%'),
        el('progress', { max: 1, value: Math.min(1, f.progress) }),
        el('div', { class: 'sub' }, t('dash.goal.sub', number(f.registered), number(f.goal))));
    const fw = d.forwarding;
    const healthy = !f.error && (!fw || fw.failures === 0);
    content.replaceChildren(
      el('div', { class: 'grid' },
        stat(t('dash.node'), number(d.node.registered), d.node.prefix + ' · ' + d.node.name, 'dash-node-registered'),
        stat(t('dash.today'), number(d.node.today), t('dash.today.sub'), 'dash-today'),
        stat(t('dash.enterprises'), number(d.node.enterprises), '', 'dash-enterprises'),
        fed),
      el('div', { class: 'card' }, el('h2', {}, t('dash.rate')), chart(d.rates.series, d.rates.minute),
        el('p', { class: 'muted' }, d.rates.totals.map((x) => x.interface.toUpperCase() + ' ' + number(x.local + x.forwarded)).join(' · '))),
      el('div', { class: 'grid' },
        stat(t('dash.cache'), fw ? (fw.hit_ratio * 100).toFixed(1) + '%' : '—', fw ? t('dash.cache.sub', number(fw.cache_hits), number(fw.forwarded)) : '', 'dash-cache'),
        stat(t('dash.upstream'), healthy ? t('dash.ok') : t('dash.degraded'),
          fw ? t('dash.upstream.sub', number(fw.upstream_calls), number(fw.remote_calls), number(fw.failures), number(fw.stale_answers)) : '', 'dash-upstream'),
        stat(t('dash.federation'), f.error ? '—' : f.live_nodes + ' / ' + f.nodes, f.source, 'dash-federation'),
        stat(t('dash.version'), d.node.version, t('dash.log', number(d.node.log_seq)), 'dash-version')),
      el('div', { class: 'card' }, el('h2', {}, t('dash.by.enterprise')),
        el('table', { id: 'dash-enterprises-table' },
          el('thead', {}, el('tr', {}, ['ent.prefix', 'ent.name', 'dash.registered', 'dash.today'].map((k) => el('th', {}, t(k))))),
          el('tbody', {}, d.enterprises.map((e) => el('tr', { 'data-prefix': e.prefix },
            el('td', { class: 'mono' }, e.prefix), el('td', {}, e.name),
            el('td', { class: 'registered' }, number(e.registered)), el('td', {}, number(e.today)))))),
      classTable(d.classes)));
  }

  // Identifiers by the data domain (rows) and risk level (columns) of their classified values.
  function classTable(classes) {
    const risks = ['high', 'medium', 'low'];
    const domains = ['rd', 'production', 'operations', 'management', 'external'];
    const cell = (dom, risk) => classes.find((c) => c.domain === dom && c.risk === risk);
    return el('div', { class: 'card' }, el('h2', {}, t('dash.by.class')),
      el('table', { id: 'dash-classes-table' },
        el('thead', {}, el('tr', {}, el('th', {}, ''), risks.map((r) => el('th', {}, t('risk.' + r))))),
        el('tbody', {}, domains.map((dom) => el('tr', { 'data-domain': dom },
          el('th', {}, t('domain.' + dom)),
          risks.map((r) => el('td', { 'data-risk': r, class: 'registered' }, number(cell(dom, r) ? cell(dom, r).registered : 0))))))),
      el('p', { class: 'muted' }, t('dash.by.class.sub')));
  }

  async function viewEnterprises(content) {
    const msg = el('div', { id: 'ent-msg' });
    const list = el('div', {});
    const shownOnce = (token) => el('div', { class: 'notice info' }, el('p', {}, t('ent.token.once')), el('code', { class: 'token', id: 'ent-token' }, token));
    const load = async () => {
      const r = await api('GET', '/enterprises');
      list.replaceChildren(el('table', { id: 'ent-table' },
        el('thead', {}, el('tr', {}, ['ent.prefix', 'ent.name', 'ent.industry', 'ent.quota', ''].map((k) => el('th', {}, k ? t(k) : '')))),
        el('tbody', {}, r.enterprises.map((e) => {
          const q = e.quota;
          const inputs = ['max_registrations', 'max_registrations_per_day', 'max_requests_per_second'].map((k) =>
            el('input', { type: 'number', min: 0, name: k, value: q[k] == null ? '' : q[k], placeholder: t('quota.' + k), size: 9 }));
          return el('tr', { 'data-prefix': e.prefix },
            el('td', { class: 'mono' }, e.prefix), el('td', {}, e.name), el('td', { class: 'mono' }, e.industry_code),
            el('td', {}, el('div', { class: 'row' }, inputs, el('button', {
              type: 'button', class: 'plain',
              onclick: async () => {
                const body = { prefix: e.prefix };
                inputs.forEach((i) => { if (i.value !== '') body[i.name] = Number(i.value); });
                try { await api('PUT', '/quota', body); msg.replaceChildren(notice('ok', t('quota.saved', e.prefix))); } catch (err) { msg.replaceChildren(notice('error', err.message)); }
              },
            }, t('quota.save')))),
            el('td', {}, el('button', {
              type: 'button', class: 'plain',
              onclick: async () => {
                try {
                  const r2 = await api('POST', '/enterprises/rotate', { prefix: e.prefix, keep_previous: true });
                  msg.replaceChildren(notice('ok', t('ent.rotated', e.prefix)), shownOnce(r2.token));
                } catch (err) { msg.replaceChildren(notice('error', err.message)); }
              },
            }, t('ent.rotate'))));
        }))));
    };
    const prefix = el('input', { class: 'mono', id: 'ent-prefix', placeholder: '88.101.30', required: true });
    const name = el('input', { id: 'ent-name', placeholder: t('ent.name'), required: true });
    const industry = el('input', { class: 'mono', id: 'ent-industry', placeholder: 'C3976', size: 8 });
    content.replaceChildren(
      el('div', { class: 'card' }, el('h2', {}, t('ent.create')),
        el('form', {
          class: 'inline', id: 'ent-form',
          onsubmit: async (ev) => {
            ev.preventDefault();
            try {
              const r = await api('POST', '/enterprises', { prefix: prefix.value.trim(), name: name.value.trim(), industry_code: industry.value.trim() });
              msg.replaceChildren(notice('ok', t('ent.created', r.prefix)), shownOnce(r.token));
              load();
            } catch (e) { msg.replaceChildren(notice('error', e.message)); }
          },
        }, prefix, name, industry, el('button', { type: 'submit' }, t('ent.create')))),
      msg,
      el('div', { class: 'card' }, el('h2', {}, t('ent.list')), list));
    await load();
  }

  // ---- routing ------------------------------------------------------------------------

  function route() {
    if (timer) { clearInterval(timer); timer = null; }
    updateHeader();
    const path = location.pathname;
    if (path === '/') {
      const id = new URLSearchParams(location.search).get('id');
      return id ? pageIdentifier(id) : pageLookup();
    }
    if (path === '/console/signin') return pageSignin();
    if (path === '/console/enterprise') return pageEnterprise();
    if (path === '/console/operator') return pageOperator();
    if (path.startsWith('/console/')) {
      return show(el('h1', {}, t('error.nopage')), el('p', {}, el('a', { href: '/' }, t('nav.lookup'))));
    }
    let text;
    try { text = decodeURIComponent(path.slice(1)); } catch (_) { text = path.slice(1); }
    return pageIdentifier(text);
  }

  async function start() {
    document.getElementById('lang').addEventListener('click', async () => {
      lang = lang === 'en' ? 'zh-CN' : 'en';
      localStorage.setItem(LANG, lang);
      await loadStrings();
      route();
    });
    document.getElementById('signout').addEventListener('click', signOut);
    window.addEventListener('hashchange', () => route());
    await loadStrings();
    await route();
    document.body.dataset.ready = '1';
  }

  document.addEventListener('DOMContentLoaded', () => {
    start().catch((e) => show(notice('error', String(e && e.message ? e.message : e))));
  });
})();
