// Keel's GraphiQL bootstrap. Served by the kernel like the vendored
// scripts before it (React, ReactDOM, GraphiQL's UMD build), so the page's
// Content-Security-Policy can be `script-src 'self'`: no inline script,
// no third-party host, no eval. Queries go to this origin's /graphql as
// JSON; the caller's API key goes in the Headers editor and is not stored
// by the browser (GraphiQL keeps the query and variables, not headers).
(function () {
  'use strict';

  var ENDPOINT = '/graphql';

  var DEFAULT_QUERY =
    '# Keel GraphQL\n' +
    '#\n' +
    '# Paste your API key into Headers below:\n' +
    '#   { "Authorization": "Bearer <API key>" }\n' +
    '# then run the query (Ctrl-Enter).\n' +
    '# Headers are not saved.\n' +
    '\n' +
    '{\n' +
    '  __typename\n' +
    '}\n';

  function fetcher(params, opts) {
    var headers = {
      'Content-Type': 'application/json',
      Accept: 'application/graphql-response+json, application/json'
    };
    var extra = (opts && opts.headers) || {};
    Object.keys(extra).forEach(function (name) {
      headers[name] = String(extra[name]);
    });
    return fetch(ENDPOINT, {
      method: 'POST',
      headers: headers,
      body: JSON.stringify(params),
      credentials: 'omit',
      cache: 'no-store'
    }).then(function (response) {
      return response.text().then(function (text) {
        try {
          return JSON.parse(text);
        } catch (e) {
          return { errors: [{ message: 'HTTP ' + response.status + ': ' + text }] };
        }
      });
    });
  }

  ReactDOM.createRoot(document.getElementById('graphiql')).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: DEFAULT_QUERY,
      defaultEditorToolsVisibility: 'headers',
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false
    })
  );
})();
