"use strict";
// A real MQTT 3.1.1 broker (aedes) serving MQTT over WebSocket on 127.0.0.1, for the
// console's browser test: `node ws_broker.js PATH [AUTH_BASE_URL]`.
//
// It prints one JSON line {"port": N} once it listens, and exits on SIGTERM or when its
// standard input closes (so it never outlives the test that started it). With
// AUTH_BASE_URL, a CONNECT is admitted only when the manager's self-service route
// `GET AUTH_BASE_URL/v1/instances/<username>` accepts the username and password (what
// EMQX asks the ExHook in production): a stale password is refused with CONNACK 4.
const http = require("node:http");
const { Aedes } = require("aedes");
const { WebSocketServer, createWebSocketStream } = require("ws");

const path = process.argv[2] || "/mqtt";
const authBase = process.argv[3] || "";

function checkWithManager(username, password) {
  return new Promise((resolve) => {
    const token = Buffer.from(`${username}:${password}`).toString("base64");
    const url = `${authBase}/v1/instances/${encodeURIComponent(username)}`;
    const request = http.get(url, { headers: { Authorization: `Basic ${token}` } }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    request.on("error", () => resolve(false));
  });
}

async function main() {
  const broker = await Aedes.createBroker();
  if (authBase) {
    broker.authenticate = (client, username, password, callback) => {
      checkWithManager(username || "", password ? password.toString() : "").then((ok) => {
        if (ok) return callback(null, true);
        const error = new Error("bad user name or password");
        error.returnCode = 4;
        return callback(error, false);
      });
    };
  }
  const server = http.createServer();
  const wss = new WebSocketServer({ server, path });
  wss.on("connection", (socket, req) => broker.handle(createWebSocketStream(socket), req));
  const stop = () => {
    for (const socket of wss.clients) socket.terminate();
    server.close();
    broker.close(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.stdin.on("end", stop);
  process.stdin.resume();
  server.listen(0, "127.0.0.1", () => {
    process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
  });
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
