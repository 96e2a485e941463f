// A Node `ws` server over https for tests/client/test_wss.py: argv[2] and
// argv[3] are the PEM certificate and key. Prints its port on stdout, then
// echoes; the text message "sni" is answered with "sni <servername>" and
// "alpn" with "alpn <protocol>" (what the client's TLS handshake sent).
// Exits on stdin EOF.
"use strict";
const fs = require("fs");
const https = require("https");
const { WebSocketServer } = require("ws");

const server = https.createServer({
  cert: fs.readFileSync(process.argv[2]),
  key: fs.readFileSync(process.argv[3]),
  ALPNProtocols: ["http/1.1"],
});
const wss = new WebSocketServer({
  server,
  perMessageDeflate: { threshold: 0 },
  maxPayload: 32 * 1024 * 1024,
});

wss.on("connection", (ws, req) => {
  const sock = req.socket;
  ws.on("message", (data, isBinary) => {
    if (!isBinary && data.toString() === "sni") {
      ws.send(`sni ${sock.servername || ""}`);
      return;
    }
    if (!isBinary && data.toString() === "alpn") {
      ws.send(`alpn ${sock.alpnProtocol || ""}`);
      return;
    }
    ws.send(data, { binary: isBinary });
  });
});

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${server.address().port}\n`);
});
process.stdin.on("end", () => {
  wss.close();
  server.close();
  process.exit(0);
});
process.stdin.resume();
setTimeout(() => process.exit(1), 120000).unref();
