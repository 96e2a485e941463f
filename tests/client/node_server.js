// A Node `ws` server for tests/client/test_sync_node.py: prints its port on
// stdout, then echoes. Commands (text messages): "close <code> <reason>"
// closes with that code; "fragments" sends one text message in three
// frames; "ping" pings and reports "pong <payload>" once the pong arrives.
// argv[2] = "deflate" turns permessage-deflate on. Exits on stdin EOF.
"use strict";
const { WebSocketServer } = require("ws");

const deflate = process.argv[2] === "deflate";
const wss = new WebSocketServer({
  host: "127.0.0.1",
  port: 0,
  perMessageDeflate: deflate ? { threshold: 0 } : false,
  maxPayload: 32 * 1024 * 1024,
  handleProtocols: (protocols) => (protocols.has("chat") ? "chat" : false),
});

wss.on("listening", () => {
  process.stdout.write(`${wss.address().port}\n`);
});

wss.on("connection", (ws, req) => {
  ws.on("message", (data, isBinary) => {
    if (!isBinary) {
      const text = data.toString();
      if (text.startsWith("close ")) {
        const [, code, ...reason] = text.split(" ");
        ws.close(Number(code), reason.join(" "));
        return;
      }
      if (text === "fragments") {
        ws.send("one ", { fin: false });
        ws.send("two ", { fin: false });
        ws.send("three", { fin: true });
        return;
      }
      if (text === "ping") {
        ws.once("pong", (payload) => ws.send(`pong ${payload.toString()}`));
        ws.ping("from-node");
        return;
      }
      if (text === "extensions") {
        ws.send(`ext ${req.headers["sec-websocket-extensions"] || ""} proto ${ws.protocol}`);
        return;
      }
    }
    ws.send(data, { binary: isBinary });
  });
});

process.stdin.on("end", () => {
  wss.close();
  process.exit(0);
});
process.stdin.resume();
setTimeout(() => process.exit(1), 120000).unref();
