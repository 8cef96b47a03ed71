// A streamed chat with the Open Clanker gateway over gRPC-Web, from Node, with the TypeScript client
// generated from proto/ (buf.gen.yaml -> gen/). Prints the answer's deltas as they arrive.
//
//   npm ci && npx tsx chat.ts [--addr http://127.0.0.1:18789] [--session ID | --key KEY] "message"
//
// The address also comes from OPEN_CLANKER_ADDR. When the gateway requires API tokens, set
// OPEN_CLANKER_TOKEN: it is sent as `authorization: Bearer <token>`.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ChatService, type ChatRequestSchema } from "./gen/openclanker/v1/chat_pb.js";

function usage(): never {
  console.error('usage: chat.ts [--addr URL] [--session ID | --key KEY] [--provider NAME] [--model NAME] "message"');
  process.exit(2);
}

const args = process.argv.slice(2);
let addr = process.env.OPEN_CLANKER_ADDR || "http://127.0.0.1:18789";
const request: MessageInitShape<typeof ChatRequestSchema> = { text: "" };
const words: string[] = [];
for (let i = 0; i < args.length; i++) {
  const value = () => args[++i] ?? usage();
  switch (args[i]) {
    case "--addr":
      addr = value();
      break;
    case "--session":
      request.session = { case: "sessionId", value: value() };
      break;
    case "--key":
      request.session = { case: "sessionKey", value: value() };
      break;
    case "--provider":
      request.provider = value();
      break;
    case "--model":
      request.model = value();
      break;
    case "-h":
    case "--help":
      usage();
    default:
      words.push(args[i]);
  }
}
request.text = words.join(" ");
if (!request.text) usage();
if (!/^https?:\/\//.test(addr)) addr = `http://${addr}`;

const token = process.env.OPEN_CLANKER_TOKEN;
const auth: Interceptor = (next) => (req) => {
  if (token) req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};

// gRPC-Web over HTTP/1.1, as a browser would speak it.
const transport = createGrpcWebTransport({ baseUrl: addr, httpVersion: "1.1", interceptors: [auth] });
const client = createClient(ChatService, transport);

let failed: string | undefined;
try {
  for await (const res of client.chat(request)) {
    const ev = res.event;
    switch (ev.case) {
      case "started":
        console.error(`session ${ev.value.sessionId} (${ev.value.provider} ${ev.value.model})`);
        break;
      case "delta":
        process.stdout.write(ev.value.text);
        break;
      case "usage":
        console.error(`\n[usage] ${ev.value.inputTokens} in, ${ev.value.outputTokens} out`);
        break;
      case "completed":
        process.stdout.write("\n");
        console.error(`[completed] message ${ev.value.message?.id}`);
        break;
      case "error":
        failed = `${ev.value.code}: ${ev.value.message}`;
        break;
    }
  }
} catch (err) {
  const e = ConnectError.from(err);
  failed ??= `${Code[e.code]}: ${e.rawMessage}`;
}
if (failed) {
  console.error(`\nerror: ${failed}`);
  process.exit(1);
}
