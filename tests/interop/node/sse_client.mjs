// One SSE stream with the `eventsource` package, resuming by itself (Last-Event-ID) when the
// server drops the connection: prints {"events": [[id, data]], "end", "reconnects"}.
import { EventSource } from "eventsource";

const [url] = process.argv.slice(2);
const out = { events: [], end: null, reconnects: 0, errors: [] };
const source = new EventSource(url);
const timer = setTimeout(() => finish("timeout"), 30000);

function finish(problem) {
  clearTimeout(timer);
  if (problem) out.errors.push(problem);
  source.close();
  process.stdout.write(JSON.stringify(out) + "\n");
}

source.addEventListener("data", (event) => out.events.push([event.lastEventId, event.data]));
source.addEventListener("end", (event) => {
  out.end = JSON.parse(event.data);
  finish(null);
});
source.addEventListener("error", (event) => {
  if (event.data) finish(event.data); // an `event: error` from the server
  else out.reconnects += 1; // the connection dropped: EventSource reconnects
});
