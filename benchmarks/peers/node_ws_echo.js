// Echo / broadcast server on Node's `ws` (the root package.json's copy), compression off
// unless --deflate (then ws's default permessage-deflate options).
// Usage: node node_ws_echo.js --port P [--mode echo|broadcast] [--deflate]
'use strict';
const path = require('path');
const { WebSocketServer } = require(path.join(__dirname, '..', '..', 'node_modules', 'ws'));

const args = process.argv.slice(2);
const get = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const port = Number(get('--port'));
const mode = get('--mode', 'echo');
if (!port || !['echo', 'broadcast'].includes(mode)) {
  console.error('usage: node node_ws_echo.js --port P [--mode echo|broadcast]');
  process.exit(2);
}

const deflate = args.includes('--deflate');
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: deflate, maxPayload: 16 * 1024 * 1024 });
wss.on('connection', (ws) => {
  if (mode === 'echo') {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  } else {
    ws.on('message', (data, isBinary) => {
      for (const c of wss.clients) c.send(data, { binary: isBinary });
    });
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
