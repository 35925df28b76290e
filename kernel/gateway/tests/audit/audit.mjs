// Runs graphql-http's GraphQL-over-HTTP server audits against one endpoint.
//
//   node audit.mjs <url> [bearer-token]
//   GRAPHQL_AUDIT_URL=… GRAPHQL_AUDIT_TOKEN=… node audit.mjs
//
// Prints every audit (id, status, name, and the reason of a failure), then a
// one-line summary. Exits 1 when a MUST (`error`) or SHOULD (`warn`) audit
// did not pass, 2 on a usage error; MAY audits (`notice`) never fail the run.

import { serverAudits } from 'graphql-http';

const url = process.argv[2] ?? process.env.GRAPHQL_AUDIT_URL;
const token = process.argv[3] ?? process.env.GRAPHQL_AUDIT_TOKEN ?? '';
if (!url) {
  console.error('usage: node audit.mjs <url> [bearer-token]  (or GRAPHQL_AUDIT_URL, GRAPHQL_AUDIT_TOKEN)');
  process.exit(2);
}

/** `fetch`, adding `Authorization: Bearer <token>` when a token is given. */
function fetchFn(input, init = {}) {
  if (!token) return fetch(input, init);
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${token}`);
  return fetch(input, { ...init, headers });
}

/** Status, content type and (when still unread) the start of the body. */
async function describe(res) {
  if (!res || typeof res.status !== 'number') return '';
  let text = `HTTP ${res.status}, content-type: ${res.headers.get('content-type') ?? '(none)'}`;
  if (!res.bodyUsed) {
    try {
      const body = await res.text();
      text += `, body: ${body.length > 300 ? `${body.slice(0, 300)}…` : body}`;
    } catch {
      // The body could not be read; the status and type are enough.
    }
  }
  return text;
}

const results = [];
for (const audit of serverAudits({ url, fetchFn })) {
  let result;
  try {
    result = await audit.fn();
  } catch (err) {
    // A fatal error (the server is unreachable, say) fails the audit whatever its level.
    result = { id: audit.id, name: audit.name, status: 'error', reason: `fatal: ${err?.stack ?? err}` };
  }
  results.push(result);
  const line = `${result.status.toUpperCase().padEnd(6)} ${result.id} ${result.name}`;
  if (result.status === 'ok') {
    console.log(line);
  } else {
    const response = await describe(result.response);
    console.log(`${line}\n         reason: ${result.reason}${response ? `\n         response: ${response}` : ''}`);
  }
}

const count = (status) => results.filter((r) => r.status === status).length;
const failed = results.filter((r) => r.status === 'error' || r.status === 'warn');
console.log(
  `graphql-http audit of ${url}: ${results.length} audits, ${count('ok')} ok, ` +
    `${count('error')} MUST failed, ${count('warn')} SHOULD failed, ${count('notice')} MAY not met` +
    (failed.length ? ` — FAILED: ${failed.map((r) => r.id).join(', ')}` : ' — passed'),
);
process.exit(failed.length ? 1 : 0);
