/**
 * A small OpenAI-compatible server on loopback: `/chat/completions`, plain and streamed. A
 * model's behaviour is chosen by its name: `...-429` answers 429, `...-500` answers 500,
 * `...-slow` answers after 2 s, `...-garbage` answers a body that is not a completion; any
 * other model answers "<model> says: <last user message>".
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface OpenAIServer {
  readonly baseUrl: string;
  readonly requests: { model: string; messages: { role: string; content: string }[]; stream: boolean; body: Record<string, unknown> }[];
  close(): Promise<void>;
}

function answer(res: ServerResponse, body: Record<string, unknown>, req: IncomingMessage): void {
  const model = String(body.model);
  const messages = body.messages as { role: string; content: string }[];
  const last = messages[messages.length - 1]?.content ?? "";
  const text = `${model} says: ${last}`;
  if (model.endsWith("-429")) {
    res.writeHead(429, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "slow down" } }));
    return;
  }
  if (model.endsWith("-500")) {
    res.writeHead(500, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "it broke" } }));
    return;
  }
  if (model.endsWith("-garbage")) {
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ hello: "world" }));
    return;
  }
  const usage = { prompt_tokens: 10 * messages.length, completion_tokens: text.split(" ").length, total_tokens: 0 };
  if (!body.stream) {
    res.writeHead(200, { "content-type": "application/json" }).end(
      JSON.stringify({
        id: "cmpl-1",
        object: "chat.completion",
        model: `${model}-2026`,
        choices: [{ index: 0, message: { role: "assistant", content: text }, finish_reason: "stop" }],
        usage,
      }),
    );
    return;
  }
  res.writeHead(200, { "content-type": "text/event-stream" });
  const words = text.split(" ");
  let i = 0;
  const next = () => {
    if (res.destroyed) return;
    if (i < words.length) {
      const delta = i === 0 ? { role: "assistant", content: words[i] } : { content: ` ${words[i]}` };
      const chunk = { id: "cmpl-2", model, choices: [{ index: 0, delta, finish_reason: null }] };
      res.write(`data: ${JSON.stringify(chunk)}\n\n`);
      i += 1;
      setTimeout(next, 2);
      return;
    }
    res.write(`data: ${JSON.stringify({ id: "cmpl-2", model, choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })}\n\n`);
    res.write(`data: ${JSON.stringify({ id: "cmpl-2", model, choices: [], usage })}\n\n`);
    res.end("data: [DONE]\n\n");
  };
  next();
}

export async function startOpenAIServer(): Promise<OpenAIServer> {
  const requests: OpenAIServer["requests"] = [];
  const server: Server = createServer((req, res) => {
    let data = "";
    req.on("data", (c: Buffer) => (data += c.toString()));
    req.on("end", () => {
      if (req.method !== "POST" || req.url !== "/v1/chat/completions") {
        res.writeHead(404).end();
        return;
      }
      const body = JSON.parse(data) as Record<string, unknown>;
      requests.push({ model: String(body.model), messages: body.messages as never, stream: Boolean(body.stream), body });
      if (String(body.model).endsWith("-slow")) setTimeout(() => answer(res, body, req), 2000).unref();
      else answer(res, body, req);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Run as a script: serve until stdin closes, printing the base URL (for other languages' tests). */
if (process.argv[1]?.endsWith("openai-server.js")) {
  const server = await startOpenAIServer();
  process.stdout.write(`${server.baseUrl}\n`);
  process.stdin.resume();
  process.stdin.on("end", () => void server.close());
}
