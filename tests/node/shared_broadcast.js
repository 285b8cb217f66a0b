'use strict';
// Broadcasts through a shared compressor, read by real peers: a publisher and six
// subscribers on wskit.pubsub.v1.json, each subscriber with its own permessage-deflate
// parameters, subscribed to topics and patterns that overlap, one of them receiving a
// compressed private reply mid-stream, one joining late. Every subscriber must receive
// exactly the events of its topics, in order, with the published data.
//
// Node:    node shared_broadcast.js URL     (prints one JSON line {ok, ...}; exit 0 when ok)
// Browser: the same file as a <script>; sharedBroadcastScenario(openSocket) resolves to the result.

async function sharedBroadcastScenario(openSocket, events = 60) {
  const PROTOCOL = 'wskit.pubsub.v1.json';
  const LONG = 't.private-reply-compressed-by-the-server';
  const plan = [['t.a'], ['t.*'], ['t.a'], ['t.a'], ['t.a', 't.b'], []];  // the last joins late
  const got = plan.map(() => []);
  const replies = plan.map(() => []);

  function data(n) {
    // Ticker-like: the same keys every time, a few digits and a padding that change.
    return { n, symbol: ['EURUSD', 'GBPUSD', 'USDJPY'][n % 3], bid: 1 + (n * 7919 % 1000) / 10000,
             book: Array.from({ length: 6 }, (_, k) => [k, (n * 31 + k) % 97]), pad: 'p'.repeat((n * 37) % 200) };
  }

  function open(i) {
    return new Promise((resolve, reject) => {
      const ws = openSocket(i, PROTOCOL);
      ws.onopen = () => resolve(ws);
      ws.onerror = () => reject(new Error(`socket ${i} failed`));
      ws.onmessage = (ev) => {
        const msg = JSON.parse(ev.data);
        if (msg.type === 'event') (i < plan.length ? got[i] : []).push([msg.topic, msg.data]);
        else if (i < plan.length) replies[i].push(msg);
      };
    });
  }

  function until(check, what) {
    return new Promise((resolve, reject) => {
      const started = Date.now();
      const poll = () => {
        if (check()) resolve();
        else if (Date.now() - started > 15000) reject(new Error('timed out waiting for ' + what));
        else setTimeout(poll, 5);
      };
      poll();
    });
  }

  async function subscribe(i, ws, topic) {
    const before = replies[i].length;
    ws.send(JSON.stringify({ type: 'subscribe', topic }));
    await until(() => replies[i].length > before, `subscribed ${topic}`);
    const reply = replies[i][replies[i].length - 1];
    if (reply.type !== 'subscribed') throw new Error(`subscribe ${topic}: ${JSON.stringify(reply)}`);
  }

  const subs = [];
  for (let i = 0; i < plan.length; i++) subs.push(await open(i));
  const publisher = await open(plan.length);
  for (let i = 0; i < plan.length; i++) for (const topic of plan[i]) await subscribe(i, subs[i], topic);

  const expected = plan.map(() => []);
  const topicsOf = plan.map((topics) => new Set(topics));
  const hears = (i, topic) => topicsOf[i].has(topic) || (topicsOf[i].has('t.*') && topic.split('.').length === 2);
  const publish = (topic, n) => {
    publisher.send(JSON.stringify({ type: 'publish', topic, data: data(n) }));
    for (let i = 0; i < plan.length; i++) if (hears(i, topic)) expected[i].push([topic, data(n)]);
  };
  const delivered = () => got.every((g, i) => g.length === expected[i].length);
  for (let n = 0; n < events; n++) {
    publish(n % 7 === 3 ? 't.b' : 't.a', n);
    if (n === Math.floor(events / 3)) {
      await until(delivered, 'the first third');
      await subscribe(2, subs[2], LONG);  // a compressed private reply between broadcasts
      await subscribe(5, subs[5], 't.a');  // a late joiner
      topicsOf[2].add(LONG);
      topicsOf[5].add('t.a');
    }
  }
  await until(delivered, 'every event');
  const mismatches = [];
  for (let i = 0; i < plan.length; i++) {
    if (JSON.stringify(got[i]) !== JSON.stringify(expected[i])) {
      mismatches.push({ subscriber: i, got: got[i].length, expected: expected[i].length });
    }
  }
  const extensions = subs.map((ws) => ws.extensions);
  for (const ws of [...subs, publisher]) ws.close();
  return { ok: mismatches.length === 0, mismatches, extensions,
           counts: got.map((g) => g.length) };
}

if (typeof module !== 'undefined' && require.main === module) {
  const WebSocket = require('ws');
  const url = process.argv[2];
  const options = [
    true,
    { serverMaxWindowBits: 9 },
    { serverNoContextTakeover: true },
    { clientMaxWindowBits: 10 },
    { serverMaxWindowBits: 9 },
    true,
    false,  // the publisher
  ];
  sharedBroadcastScenario((i, protocol) => new WebSocket(url, [protocol], { perMessageDeflate: options[i] }))
    .then((result) => {
      process.stdout.write(JSON.stringify(result) + '\n');
      process.exit(result.ok ? 0 : 1);
    }, (err) => {
      process.stdout.write(JSON.stringify({ ok: false, error: String(err) }) + '\n');
      process.exit(1);
    });
}
