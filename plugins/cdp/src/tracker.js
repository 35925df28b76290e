/* Keel CDP tracker: served at /t/{tenant}/p/cdp/tracker.js.
 *
 *   <script src="https://keel.example/t/acme/p/cdp/tracker.js"></script>
 *   <script>keelTracker.track("product.viewed", {sku: "WINE-750"});</script>
 *
 * Events are queued and posted to the tenant's public GraphQL
 * (`cdpCollect`) in batches of at most 20: when 20 are waiting, every 5
 * seconds, and when the page is hidden or left. The browser is known by a
 * random anonymous id kept in localStorage (one per tenant); on Keel's own
 * pages a signed-in consumer's events count for them. Nothing else
 * identifies the person: the tracker sends no phone, e-mail or openid.
 */
(function () {
  "use strict";
  if (window.keelTracker) return;
  var script = document.currentScript;
  var endpoint = script && script.src.replace(/\/p\/cdp\/tracker\.js(\?.*)?$/, "/graphql");
  // One id per tenant: Keel's own pages of every tenant share an origin.
  var tenant = script && (script.src.match(/\/t\/([^\/]+)\/p\/cdp\/tracker\.js/) || [])[1];
  var KEY = "keel_cdp_anonymous_id:" + (tenant || "");
  var BATCH = 20, KEEP = 100, EVERY = 5000;
  var MUTATION = "mutation($a: String!, $e: [CdpCollectEvent!]!) " +
    "{ cdpCollect(anonymousId: $a, events: $e) { accepted duplicates rejected { index message } } }";

  function random() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    var s = "";
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function anonymousId() {
    try {
      var id = localStorage.getItem(KEY);
      if (id && /^[A-Za-z0-9_-]{16,40}$/.test(id)) return id;
      id = random();
      localStorage.setItem(KEY, id);
      return id;
    } catch (e) {
      return random(); // storage refused: one id for this page
    }
  }

  var id = anonymousId();
  var queue = [];
  var sending = null;

  function send(batch, keepalive) {
    return fetch(endpoint, {
      method: "POST",
      mode: "cors",
      credentials: script && new URL(endpoint).origin === location.origin ? "same-origin" : "omit",
      keepalive: !!keepalive,
      headers: {"content-type": "application/json"},
      body: JSON.stringify({query: MUTATION, variables: {a: id, e: batch}})
    }).then(function (r) { return r.json(); }).then(function (body) {
      if (body.errors) throw new Error(body.errors[0].message);
      return body.data.cdpCollect;
    });
  }

  /* Sends what is queued; resolves with the last batch's report. A batch
   * that fails to arrive goes back to the queue (at most 100 kept). */
  function flush(keepalive) {
    if (sending) return sending.then(function () { return flush(keepalive); });
    if (!queue.length) return Promise.resolve(null);
    var batch = queue.splice(0, BATCH);
    sending = send(batch, keepalive).then(function (report) {
      sending = null;
      return queue.length ? flush(keepalive) : report;
    }, function (err) {
      sending = null;
      queue = batch.concat(queue).slice(-KEEP);
      throw err;
    });
    return sending;
  }

  function track(type, properties) {
    queue.push({
      messageId: random(),
      type: String(type),
      occurredAt: new Date().toISOString(),
      properties: properties || {}
    });
    if (queue.length > KEEP) queue.shift();
    if (queue.length >= BATCH) flush().catch(function () {});
  }

  setInterval(function () { flush().catch(function () {}); }, EVERY);
  function leaving() { flush(true).catch(function () {}); }
  addEventListener("pagehide", leaving);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") leaving();
  });

  window.keelTracker = {anonymousId: id, track: track, flush: flush};
})();
