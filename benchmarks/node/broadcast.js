'use strict';
// Broadcast subscribers and one publisher, with Node's ws, for benchmarks/bench.py.
//
//   node broadcast.js --url ws://127.0.0.1:PORT/ws --subscribers N --events M --ticks FILE
//                     [--deflate] [--window W] [--warmup K] [--timeout SECONDS]
//
// Opens N subscriber connections (subprotocol wskit.pubsub.v1.json, offering
// permessage-deflate with --deflate, as ws does by default, or nothing), each
// subscribing to one topic, and one publisher connection. The publisher
// publishes K warm-up events; once every subscriber has them the script
// prints one JSON line {"ready": true, "extensions": ...} and waits for a
// line "go" on standard input. Then the publisher publishes M events, taken
// in turn from FILE (a JSON array of event data), keeping at most W events in
// flight (published but not yet delivered to every subscriber), so no
// server's send buffers grow without bound. When every subscriber has
// received all M events it prints {"done": true, "deliveries", "elapsed_ms",
// "wire_bytes", "payload_bytes"}: wire bytes are what the subscribers'
// sockets read in that time (frame headers and compressed payloads), payload
// bytes the messages as delivered. Then it closes every connection and exits
// 0. Anything unexpected (a refused handshake, a connection closing early, an
// event that is not the one published) prints {"error": ...} and exits 1;
// --timeout bounds the whole run (exit 2).

const WebSocket = require('ws');
const fs = require('fs');
const readline = require('readline');

const PROTOCOL = 'wskit.pubsub.v1.json';
const TOPIC = 'ticks.bench';

function parseArgs(argv) {
  const opts = { window: 10, warmup: 5, timeout: 120, deflate: false, parallel: 50 };
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].replace(/^--/, '');
    if (name === 'deflate') opts.deflate = true;
    else opts[name] = argv[++i];
  }
  for (const key of ['subscribers', 'events', 'window', 'warmup', 'timeout', 'parallel']) opts[key] = Number(opts[key]);
  if (!opts.url || !opts.ticks || !(opts.subscribers > 0) || !(opts.events > 0)) {
    throw new Error('usage: broadcast.js --url URL --subscribers N --events M --ticks FILE [--deflate]');
  }
  return opts;
}

function say(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

let finished = false;
const sockets = [];

function fail(message, code = 1) {
  if (finished) return;
  finished = true;
  say({ error: message });
  for (const ws of sockets) ws.terminate();
  process.exit(code);
}

function open(url, deflate) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, [PROTOCOL], { perMessageDeflate: deflate, handshakeTimeout: 30000 });
    sockets.push(ws);
    ws.once('upgrade', (res) => { ws.negotiated = res.headers['sec-websocket-extensions'] || ''; });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (req, res) => reject(new Error(`handshake refused: HTTP ${res.statusCode}`)));
  });
}

async function openAll(url, count, deflate, parallel) {
  const out = [];
  for (let i = 0; i < count; i += parallel) {  // batches stay under the servers' listen backlog
    const batch = [];
    for (let j = i; j < Math.min(count, i + parallel); j++) batch.push(open(url, deflate));
    out.push(...await Promise.all(batch));
  }
  return out;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  setTimeout(() => fail(`timed out after ${opts.timeout} s`, 2), opts.timeout * 1000);
  const ticks = JSON.parse(fs.readFileSync(opts.ticks, 'utf8'));
  const subs = await openAll(opts.url, opts.subscribers, opts.deflate, opts.parallel);
  let phase = null;  // the events being published now; null while subscribing

  await Promise.all(subs.map((ws, k) => new Promise((subscribed) => {
    ws.on('message', (data) => {
      if (phase === null) {
        const msg = JSON.parse(data);
        if (msg.type !== 'subscribed' || msg.topic !== TOPIC) fail(`expected subscribed, got ${data}`);
        subscribed();
        return;
      }
      const n = phase.counts[k]++;
      if (n === 0 || n === phase.expected.length - 1) {  // check each subscriber's first and last event
        const msg = JSON.parse(data);
        if (msg.type !== 'event' || msg.topic !== TOPIC || JSON.stringify(msg.data) !== phase.expected[n]) {
          fail(`subscriber ${k}: event ${n} is not the one published: ${String(data).slice(0, 200)}`);
        }
      }
      phase.delivered++;
      phase.payloadBytes += data.length;
      phase.next();
    });
    ws.on('close', (code) => { if (!finished) fail(`subscriber ${k} closed early (code ${code})`); });
    ws.on('error', (err) => fail(`subscriber ${k}: ${err.message}`));
    ws.send(JSON.stringify({ type: 'subscribe', topic: TOPIC }));
  })));
  const [publisher] = await openAll(opts.url, 1, opts.deflate, 1);
  publisher.on('close', (code) => { if (!finished) fail(`publisher closed early (code ${code})`); });
  publisher.on('error', (err) => fail(`publisher: ${err.message}`));
  publisher.on('message', (data) => fail(`publisher got an unexpected message: ${String(data).slice(0, 200)}`));

  // Publish `count` events from ticks[first...], at most opts.window in flight; resolves once all are delivered.
  const publishAll = (first, count) => new Promise((done) => {
    const messages = [];
    const expected = [];
    for (let i = 0; i < count; i++) {
      const data = ticks[(first + i) % ticks.length];
      messages.push(JSON.stringify({ type: 'publish', topic: TOPIC, data }));
      expected.push(JSON.stringify(data));
    }
    const total = subs.length * count;
    let published = 0;
    phase = {
      expected, counts: new Array(subs.length).fill(0), delivered: 0, payloadBytes: 0,
      next() {
        if (this.delivered === total) { done(this); return; }
        while (published < count && published - Math.floor(this.delivered / subs.length) < opts.window) {
          publisher.send(messages[published++]);
        }
      },
    };
    phase.next();
  });
  const checkCounts = (p) => {
    const short = p.counts.findIndex((c) => c !== p.expected.length);
    if (short >= 0) fail(`subscriber ${short} received ${p.counts[short]} events, not ${p.expected.length}`);
  };

  // Warm-up: compressors exist and code paths have run before anything is measured.
  checkCounts(await publishAll(opts.events, opts.warmup));
  say({ ready: true, subscribers: subs.length, extensions: subs[0].negotiated, protocol: subs[0].protocol });
  const lines = readline.createInterface({ input: process.stdin });
  await new Promise((go) => lines.on('line', (line) => { if (line.trim() === 'go') go(); }));

  const bytesRead = () => subs.reduce((sum, ws) => sum + ws._socket.bytesRead, 0);
  const wire0 = bytesRead();
  const t0 = process.hrtime.bigint();
  const measured = await publishAll(0, opts.events);
  const elapsedMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const wireBytes = bytesRead() - wire0;
  checkCounts(measured);
  finished = true;
  say({
    done: true, deliveries: measured.delivered, elapsed_ms: elapsedMs,
    wire_bytes: wireBytes, payload_bytes: measured.payloadBytes,
  });

  const closed = sockets.map((ws) => new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) resolve();
    else { ws.once('close', resolve); ws.close(1000); }
  }));
  await Promise.race([Promise.all(closed), new Promise((resolve) => setTimeout(resolve, 5000))]);
  process.exit(0);
}

main().catch((err) => fail(err.message || String(err)));
