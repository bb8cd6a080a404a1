// One diaproto.v1 stream over Node's `ws`: prints {"subprotocol", "records": [[seq, b64]], "end"}.
import WebSocket from "ws";

const [url, text] = process.argv.slice(2);
const ws = new WebSocket(url, ["diaproto.v1"]);
const out = { subprotocol: null, records: [], end: null, errors: [] };
const timer = setTimeout(() => finish("timeout"), 20000);

function finish(problem) {
  clearTimeout(timer);
  if (problem) out.errors.push(problem);
  process.stdout.write(JSON.stringify(out) + "\n");
  ws.terminate();
}

ws.on("open", () => {
  out.subprotocol = ws.protocol;
  ws.send(JSON.stringify({ type: "open", stream: 1, text }));
});
ws.on("message", (data, isBinary) => {
  if (!isBinary) {
    const control = JSON.parse(data.toString("utf8"));
    if (control.type === "error") finish(JSON.stringify(control));
    if (control.type === "end") {
      out.end = control;
      finish(null);
    }
    return;
  }
  let offset = 0;
  while (offset < data.length) {
    const seq = data.readUInt32BE(offset + 4);
    const length = data.readUInt32BE(offset + 8);
    out.records.push([seq, data.subarray(offset + 12, offset + 12 + length).toString("base64")]);
    offset += 12 + length;
  }
});
ws.on("error", (err) => finish(String(err)));
