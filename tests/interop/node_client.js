#!/usr/bin/env node
// A Node.js `ws` client for wsuv's interop tests.
//
//   node node_client.js URL SCENARIO [ARG...]
//
// Runs one scenario against the server at URL and prints exactly one JSON line
// on stdout: {"scenario": ..., "ok": true|false, ...details}. Every wait is
// bounded: the whole run gives up after DEADLINE_MS.
'use strict';

const WebSocket = require('ws');

const DEADLINE_MS = 20000;
const [url, scenario, ...args] = process.argv.slice(2);

function finish(result) {
  process.stdout.write(JSON.stringify({ scenario, ...result }) + '\n');
  process.exit(0);
}

function fail(error) {
  finish({ ok: false, error: String(error && error.stack ? error.stack : error) });
}

setTimeout(() => fail(`timed out after ${DEADLINE_MS} ms`), DEADLINE_MS).unref();

// -- deterministic payloads ------------------------------------------------------

function rng(seed) { // mulberry32
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function binaryPayload(size, seed) {
  const r = rng(seed * 7919 + size);
  const buf = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) buf[i] = Math.floor(r() * 256);
  return buf;
}

const UNITS = ['a', 'Z', ' ', 'é', 'ß', '€', '中', '😀', '\u0000'];

// A string whose UTF-8 encoding is exactly `size` bytes.
function textPayload(size, seed) {
  const r = rng(seed * 104729 + size);
  const parts = [];
  let left = size;
  while (left > 0) {
    let ch = UNITS[Math.floor(r() * UNITS.length)];
    let n = Buffer.byteLength(ch);
    if (n > left) { ch = 'x'; n = 1; }
    parts.push(ch);
    left -= n;
  }
  return parts.join('');
}

// -- a small promise-based wrapper -------------------------------------------------

// perMessageDeflate: false (the default here), or ws's options for it.
function open(target, protocols, perMessageDeflate = false) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(target, protocols, { maxPayload: 32 * 1024 * 1024, perMessageDeflate });
    const queue = [];
    const waiters = [];
    ws.on('message', (data, isBinary) => {
      const msg = { data, isBinary };
      if (waiters.length) waiters.shift()(msg); else queue.push(msg);
    });
    ws.next = () => new Promise((res) => {
      if (queue.length) res(queue.shift()); else waiters.push(res);
    });
    ws.closed = new Promise((res) => ws.on('close', (code, reason) => res({ code, reason: reason.toString() })));
    ws.once('upgrade', (res) => { ws.answered = res.headers['sec-websocket-extensions'] || null; });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (req, res) => {
      const err = new Error(`unexpected response ${res.statusCode}`);
      err.statusCode = res.statusCode;
      res.resume();
      req.destroy();
      reject(err);
    });
  });
}

function same(msg, expected) {
  if (typeof expected === 'string') return !msg.isBinary && msg.data.toString('utf8') === expected;
  return msg.isBinary && Buffer.compare(msg.data, expected) === 0;
}

async function closeNormally(ws) {
  ws.close(1000);
  return ws.closed;
}

// -- scenarios ---------------------------------------------------------------------

const SIZES = [0, 1, 125, 126, 65535, 65536, 1024 * 1024];

// JSON-like text of exactly `size` bytes (ASCII): what compression is for.
function jsonPayload(size, seed) {
  const r = rng(seed * 31 + size);
  const parts = [];
  let n = 0;
  while (n < size) {
    const item = `{"id":${Math.floor(r() * 1e6)},"name":"item-${Math.floor(r() * 17)}","ok":true},`;
    parts.push(item);
    n += item.length;
  }
  return parts.join('').slice(0, size);
}

const scenarios = {
  // permessage-deflate with ws's own zlib streams: args[0] is 'takeover' or
  // 'no-takeover' (both directions reset per message).
  async deflate() {
    const mode = args[0] || 'takeover';
    const pmd = mode === 'no-takeover'
      ? { threshold: 0, serverNoContextTakeover: true, clientNoContextTakeover: true }
      : { threshold: 0 };
    const ws = await open(url, undefined, pmd);
    const extensions = { names: ws.extensions, answered: ws.answered };
    const results = [];
    const sizes = [0, 1, 125, 126, 65536, 1024 * 1024, 16 * 1024 * 1024 - 1024];
    for (const kind of ['json', 'text', 'binary']) {
      for (const size of sizes) {
        if (kind !== 'json' && size > 1024 * 1024) continue;
        const payload = kind === 'json' ? jsonPayload(size, 5)
          : kind === 'text' ? textPayload(size, 5) : binaryPayload(size, 5);
        ws.send(payload);
        const msg = await ws.next();
        results.push({ kind, size, ok: same(msg, payload), got: msg.data.length });
      }
    }
    const big = binaryPayload(16 * 1024 * 1024 - 1024, 6);
    ws.send(big);
    let msg = await ws.next();
    results.push({ kind: 'binary', size: big.length, ok: same(msg, big) });
    // Fragmented and compressed: RSV1 on the first frame only.
    const text = jsonPayload(300000, 7);
    const raw = Buffer.from(text, 'utf8');
    const cuts = [0, 1, 1000, 150000, raw.length];
    for (let i = 0; i + 1 < cuts.length; i++) {
      ws.send(raw.subarray(cuts[i], cuts[i + 1]), { binary: false, compress: true, fin: i + 2 === cuts.length });
    }
    msg = await ws.next();
    results.push({ kind: 'fragmented', fragments: cuts.length - 1, ok: same(msg, text) });
    const closed = await closeNormally(ws);
    return { ok: results.every((r) => r.ok), extensions, results, closed };
  },

  async echo() {
    const ws = await open(url);
    const results = [];
    for (const kind of ['text', 'binary']) {
      for (const size of SIZES) {
        const payload = kind === 'text' ? textPayload(size, 1) : binaryPayload(size, 1);
        ws.send(payload);
        const msg = await ws.next();
        results.push({ kind, size, ok: same(msg, payload), got: msg.data.length });
      }
    }
    const closed = await closeNormally(ws);
    return { ok: results.every((r) => r.ok), results, closed };
  },

  async fragmented() {
    const ws = await open(url);
    const results = [];
    // Text whose fragments split multi-byte UTF-8 sequences.
    const text = 'é€😀 ' + textPayload(100000, 2);
    const raw = Buffer.from(text, 'utf8');
    const cuts = [0, 1, 3, 5, 6, 8, 5000, 70001, raw.length];
    for (let i = 0; i + 1 < cuts.length; i++) {
      ws.send(raw.subarray(cuts[i], cuts[i + 1]), { binary: false, fin: i + 2 === cuts.length });
    }
    let msg = await ws.next();
    results.push({ kind: 'text', fragments: cuts.length - 1, ok: same(msg, text) });
    // Binary in fragments of varying size, including an empty one.
    const data = binaryPayload(1024 * 1024 + 7, 3);
    const bcuts = [0, 10, 10, 65536, 500000, data.length];
    for (let i = 0; i + 1 < bcuts.length; i++) {
      ws.send(data.subarray(bcuts[i], bcuts[i + 1]), { binary: true, fin: i + 2 === bcuts.length });
    }
    msg = await ws.next();
    results.push({ kind: 'binary', fragments: bcuts.length - 1, ok: same(msg, data) });
    const closed = await closeNormally(ws);
    return { ok: results.every((r) => r.ok), results, closed };
  },

  async ping() {
    const ws = await open(url);
    const payloads = [Buffer.alloc(0), Buffer.from('ping!'), binaryPayload(125, 4)];
    const results = [];
    for (const p of payloads) {
      const pong = new Promise((res) => ws.once('pong', res));
      ws.ping(p);
      const got = await pong;
      results.push({ size: p.length, ok: Buffer.compare(got, p) === 0 });
    }
    ws.send('after pings');
    const msg = await ws.next();
    results.push({ kind: 'echo-after-ping', ok: same(msg, 'after pings') });
    const closed = await closeNormally(ws);
    return { ok: results.every((r) => r.ok), results, closed };
  },

  async close() {
    const code = Number(args[0]);
    const reason = args[1] || '';
    const ws = await open(url);
    ws.send('before close');
    const msg = await ws.next();
    ws.close(code, reason);
    const closed = await ws.closed;
    return { ok: same(msg, 'before close'), closed };
  },

  async wait_close() { // the server closes; report what we saw
    const ws = await open(url);
    const closed = await ws.closed;
    return { ok: true, closed };
  },

  async subprotocol() {
    const ws = await open(url, ['a', 'b']);
    const protocol = ws.protocol;
    ws.send('with a subprotocol');
    const msg = await ws.next();
    const closed = await closeNormally(ws);
    return { ok: same(msg, 'with a subprotocol'), protocol, closed };
  },

  async reject() {
    try {
      const ws = await open(url);
      ws.terminate();
      return { ok: false, error: 'handshake was accepted' };
    } catch (err) {
      return { ok: err.statusCode !== undefined, status: err.statusCode ?? null, error: String(err) };
    }
  },

  async bulk() {
    const count = Number(args[0] || 20000);
    const ws = await open(url);
    const started = process.hrtime.bigint();
    let received = 0;
    let inOrder = true;
    const done = new Promise((res) => {
      ws.on('message', (data) => {
        if (data.toString() !== `m${received}`) inOrder = false;
        received += 1;
        if (received === count) res();
      });
    });
    for (let i = 0; i < count; i++) ws.send(`m${i}`);
    await done;
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const closed = await closeNormally(ws);
    return { ok: inOrder, count, seconds, rate: count / seconds, closed };
  },
};

const run = scenarios[scenario];
if (!url || !run) {
  fail(`usage: node node_client.js URL {${Object.keys(scenarios).join('|')}} [ARG...]`);
} else {
  run().then(finish, fail);
}
