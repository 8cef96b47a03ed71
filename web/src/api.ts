// The gateway's API over gRPC-Web, with clients generated from proto/ (`buf generate`, see buf.gen.yaml).
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ChatService } from "./gen/openclanker/v1/chat_pb.js";
import { GatewayService } from "./gen/openclanker/v1/gateway_pb.js";
import { SessionService } from "./gen/openclanker/v1/session_pb.js";

// ---- API token hook (issue 6, API auth) --------------------------------------------------------
// A token saved in the page's settings is kept in localStorage and sent with every call as the gRPC
// metadata `authorization: Bearer <token>`; with no token saved, no header is sent.
const TOKEN_KEY = "openclanker.apiToken";

export function getToken(): string {
  try {
    return localStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}

export function setToken(token: string): void {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage disabled: the token lasts until the page is closed.
  }
}

const authorization: Interceptor = (next) => (req) => {
  const token = getToken();
  if (token) req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};
// -------------------------------------------------------------------------------------------------

// The gateway that served this page (same origin, and the same path prefix behind a proxy).
export const gatewayUrl = new URL(".", location.href).href.replace(/\/$/, "");

const transport = createGrpcWebTransport({ baseUrl: gatewayUrl, interceptors: [authorization] });

export const chatClient = createClient(ChatService, transport);
export const sessionClient = createClient(SessionService, transport);
export const gatewayClient = createClient(GatewayService, transport);

/** A gRPC status code's name as the gateway writes it in error events: "UNAVAILABLE". */
export function codeName(code: Code): string {
  return (Code[code] ?? "UNKNOWN").replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/** Whether the call failed because the gateway could not be reached (fetch failed). */
export function unreachable(e: ConnectError): boolean {
  return (
    (e.code === Code.Unknown || e.code === Code.Internal) &&
    /fetch|network|load failed|input stream|protocol error/i.test(e.rawMessage)
  );
}

/** A sentence for a person about a failed call. */
export function explain(err: unknown): string {
  const e = ConnectError.from(err);
  const msg = e.rawMessage || "no details";
  switch (e.code) {
    case Code.Canceled:
      return "Stopped.";
    case Code.Unauthenticated:
      return `The gateway refused the request: ${msg}. Set an API token under "API token".`;
    case Code.PermissionDenied:
      return `Not allowed: ${msg}.`;
    case Code.Unknown:
    case Code.Internal:
      if (unreachable(e)) return `Cannot reach the gateway at ${gatewayUrl} (${msg}). Is it running?`;
      return `The gateway failed (${codeName(e.code)}): ${msg}`;
    case Code.Unavailable:
      return `Unavailable: ${msg}`;
    default:
      return `${codeName(e.code)}: ${msg}`;
  }
}

export { Code, ConnectError };
