'use strict';
// Connects Node's ws client to a WebSocket echo server once per perMessageDeflate
// option set of a matrix, sends text and binary messages (compressible and random,
// 1-20 KB, some repeating 300-400 bytes apart), checks each echo is identical and
// prints one JSON array of results on stdout.
//
// Usage: node ws_matrix.js URL   (the matrix is built below; ids name each combination)

let WebSocket;
try {
  WebSocket = require('ws');
} catch (err) {
  process.stderr.write('the ws package is missing: run npm ci in tests/node\n');
  process.exit(3);
}
const crypto = require('crypto');

const url = process.argv[2];
const PARALLEL = 6;
const TIMEOUT_MS = 15000;

function messages() {
  const block = crypto.randomBytes(350);
  const json = JSON.stringify(
    Array.from({ length: 200 }, (_, i) => ({ id: i, room: 'lobby', text: `message number ${i}` }))
  );
  return [
    { data: 'hello '.repeat(200), binary: false }, // 1.2 KB, compressible
    { data: json, binary: false }, // ~10 KB JSON
    { data: Buffer.concat(Array(24).fill(block)), binary: true }, // 8.4 KB, repeats 350 bytes apart
    { data: crypto.randomBytes(5000), binary: true }, // incompressible
    { data: ('x'.repeat(300) + crypto.randomBytes(60).toString('hex')).repeat(40), binary: false }, // ~20 KB
    { data: 'hello '.repeat(200), binary: false }, // again: context takeover pays here
  ];
}

function matrix() {
  const out = [];
  for (const cmwb of [true, 8, 9, 10, 11, 12, 13, 14, 15]) {
    for (const smwb of [null, 8, 9, 10, 11, 12, 13, 14, 15]) {
      for (const nct of ['none', 'server', 'client', 'both']) {
        const opts = { clientMaxWindowBits: cmwb, threshold: 0 };
        if (smwb !== null) opts.serverMaxWindowBits = smwb;
        if (nct === 'server' || nct === 'both') opts.serverNoContextTakeover = true;
        if (nct === 'client' || nct === 'both') opts.clientNoContextTakeover = true;
        out.push({ id: `cmwb=${cmwb}-smwb=${smwb === null ? 'unset' : smwb}-nct=${nct}`, options: opts });
      }
    }
  }
  return out;
}

function runOne(combo) {
  return new Promise((resolve) => {
    const result = { id: combo.id, options: combo.options, ok: false };
    const msgs = messages();
    let sent = 0;
    let received = 0;
    let payloadBytes = 0;
    let finished = false;
    const ws = new WebSocket(url, { perMessageDeflate: combo.options });
    const timer = setTimeout(() => finish('timed out'), TIMEOUT_MS);

    function finish(error) {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      if (error) result.error = String(error);
      if (ws._socket) {
        result.bytesRead = ws._socket.bytesRead;
        result.bytesWritten = ws._socket.bytesWritten;
      }
      result.payloadBytes = payloadBytes;
      result.received = received;
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.terminate();
      resolve(result);
    }

    ws.on('upgrade', (res) => {
      result.response = res.headers['sec-websocket-extensions'] || null;
    });
    ws.on('open', () => {
      const ext = ws._extensions['permessage-deflate'];
      result.params = ext ? ext.params : null;
      sendNext();
    });
    function sendNext() {
      const m = msgs[sent++];
      payloadBytes += Buffer.byteLength(m.data);
      ws.send(m.data, { binary: m.binary, compress: true });
    }
    ws.on('message', (data, isBinary) => {
      const expected = msgs[received];
      received += 1;
      const same = isBinary === expected.binary &&
        Buffer.from(data).equals(Buffer.isBuffer(expected.data) ? expected.data : Buffer.from(expected.data));
      if (!same) {
        finish(`echo ${received} differs (binary=${isBinary}, ${data.length} bytes)`);
        return;
      }
      if (sent < msgs.length) {
        sendNext();
      } else {
        ws.close(1000);
      }
    });
    ws.on('close', (code) => {
      result.closeCode = code;
      if (received === msgs.length && code === 1000) {
        result.ok = true;
        finish();
      } else {
        finish(result.error || `closed with ${code} after ${received} echoes`);
      }
    });
    ws.on('error', (err) => finish(err.message));
  });
}

async function main() {
  const combos = matrix();
  const results = [];
  let next = 0;
  async function worker() {
    while (next < combos.length) {
      const combo = combos[next++];
      results.push(await runOne(combo));
    }
  }
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  process.stdout.write(JSON.stringify(results) + '\n');
}

main().catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});
