#!/usr/bin/env node
// Node `ws` as the peer for the permessage-deflate parameter tests (section 13).
//
//   node pmd_node_peer.js server CONFIGS_JSON
//     one echo server per config (ws's perMessageDeflate options, threshold 0)
//     on 127.0.0.1; prints {"ports": [...]} and runs until stdin ends.
//   node pmd_node_peer.js client URL CONFIGS_JSON
//     for each config in turn: connect with those options, echo JSON-like text
//     and binary messages of several sizes, compare every echo, close; prints
//     one JSON line: [{"config", "answered", "ok", "error", "messages"}].
// Every wait is bounded: the run gives up after DEADLINE_MS.
'use strict';

const WebSocket = require('ws');

const DEADLINE_MS = 60000;
const [mode, ...rest] = process.argv.slice(2);
setTimeout(() => {
  process.stdout.write(JSON.stringify({ error: `timed out after ${DEADLINE_MS} ms` }) + '\n');
  process.exit(1);
}, DEADLINE_MS).unref();

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

const WORDS = ['alpha', 'beta', 'gamma', 'größe', 'café', '東京', 'data', 'wsuv', '😀'];

function textMessage(size, seed) {
  const r = rng(seed);
  const parts = [];
  let n = 0;
  for (let i = 0; n < size; i++) {
    const part = `{"id":${i},"w":"${WORDS[Math.floor(r() * WORDS.length)]}","v":${Math.floor(r() * 1000)}},`;
    parts.push(part);
    n += Buffer.byteLength(part);
  }
  let buf = Buffer.from(parts.join('')).subarray(0, size);
  let s;
  while (buf.length && (buf[buf.length - 1] & 0xc0) === 0x80) buf = buf.subarray(0, buf.length - 1);
  s = buf.toString('utf8').replace(/\uFFFD$/, '');
  return s + '.'.repeat(size - Buffer.byteLength(s));
}

function binaryMessage(size, seed) {
  const r = rng(seed);
  const buf = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) buf[i] = (i >> 4) % 7 === 0 ? Math.floor(r() * 256) : (i * 31) & 0xff;
  return buf;
}

const SIZES = [[16, 12], [200, 12], [1024, 12], [8192, 4], [65536, 2], [131072, 1]];

function open(url, pmd) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: pmd, maxPayload: 1 << 24 });
    const queue = [];
    const waiters = [];
    ws.on('message', (data, isBinary) => {
      const m = { data, isBinary };
      if (waiters.length) waiters.shift()(m); else queue.push(m);
    });
    ws.next = () => new Promise((res) => (queue.length ? res(queue.shift()) : waiters.push(res)));
    ws.once('upgrade', (res) => { ws.answered = res.headers['sec-websocket-extensions'] || null; });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

async function runClient(url, config) {
  const ws = await open(url, { threshold: 0, ...config });
  let messages = 0;
  for (const [size, count] of SIZES) {
    for (let i = 0; i < count; i++) {
      for (const binary of [false, true]) {
        const payload = binary ? binaryMessage(size, size + i) : textMessage(size, size + i);
        ws.send(payload, { binary });
        const m = await ws.next();
        const same = binary
          ? m.isBinary && Buffer.compare(m.data, payload) === 0
          : !m.isBinary && m.data.toString('utf8') === payload;
        if (!same) throw new Error(`echo of ${binary ? 'binary' : 'text'} ${size} (#${i}) differs`);
        messages++;
      }
    }
  }
  const closed = new Promise((res) => ws.once('close', (code) => res(code)));
  ws.close(1000);
  const code = await closed;
  return { answered: ws.answered, messages, closeCode: code };
}

async function main() {
  if (mode === 'server') {
    const configs = JSON.parse(rest[0]);
    const ports = await Promise.all(configs.map((config) => new Promise((resolve) => {
      const wss = new WebSocket.Server({
        host: '127.0.0.1', port: 0, maxPayload: 1 << 24,
        perMessageDeflate: { threshold: 0, ...config },
      }, () => resolve(wss.address().port));
      wss.on('connection', (ws) => {
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      });
    })));
    process.stdout.write(JSON.stringify({ ports }) + '\n');
    process.stdin.on('end', () => process.exit(0));
    process.stdin.resume();
    return;
  }
  const [url, configsJson] = rest;
  const results = [];
  for (const config of JSON.parse(configsJson)) {
    try {
      results.push({ config, ok: true, ...(await runClient(url, config)) });
    } catch (e) {
      results.push({ config, ok: false, error: String(e && e.stack ? e.stack : e) });
    }
  }
  process.stdout.write(JSON.stringify(results) + '\n');
  process.exit(0);
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ error: String(e && e.stack ? e.stack : e) }) + '\n');
  process.exit(1);
});
