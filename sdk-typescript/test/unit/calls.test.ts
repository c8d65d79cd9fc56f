/** run() over async functions and completion() against an OpenAI-compatible server on loopback. */

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { ArgumentError, Completion, Provider, ProviderError, Router, silentLogger, type RouterOptions } from "../../src/index.js";
import { InMemorySink, StaticSnapshotSource } from "../../src/testing.js";
import { startOpenAIServer, type OpenAIServer } from "../support/openai-server.js";
import { schemaValidators, snapshot } from "../support/helpers.js";

const schemas = schemaValidators();
let server: OpenAIServer;
const routers: Router[] = [];
before(async () => {
  server = await startOpenAIServer();
});
after(async () => {
  for (const r of routers) await r.close(100);
  await server.close();
});

function make(options: Partial<RouterOptions>): [Router, InMemorySink] {
  const sink = new InMemorySink();
  const router = new Router({
    goal: "chat",
    paths: ["m1", "m2"],
    eventSink: sink,
    snapshotSource: new StaticSnapshotSource(null),
    defaultProvider: new Provider({ baseUrl: server.baseUrl, timeoutMs: 1000 }),
    logger: silentLogger,
    seed: 3,
    ...options,
  });
  routers.push(router);
  return [router, sink];
}

const messages = [{ role: "user", content: "hello" }];

test("run(): an error is reported and retried on a path not tried; successFn judges results", async () => {
  const calls: string[] = [];
  async function flaky(x: number): Promise<number> {
    calls.push("flaky");
    throw new Error(`no ${x}`);
  }
  async function steady(x: number): Promise<number> {
    calls.push("steady");
    return x * 2;
  }
  const [router, sink] = make({ paths: [flaky, steady], successFn: (r: number) => r > 0 });
  await router.start();
  for (let i = 1; i <= 20; i++) assert.equal(await router.run(i), 2 * i);
  const failures = sink.outcomes.filter((o) => !o.success);
  assert.equal(failures.length, calls.filter((c) => c === "flaky").length);
  assert.ok(failures.every((o) => o.failure_category === "tool_error"));
  assert.equal(sink.outcomes.filter((o) => o.success).length, 20);
  // A retry's decision offers only the paths not tried yet.
  const retried = sink.decisions.filter((d) => (d.candidates as string[]).length === 1);
  assert.equal(retried.length, failures.length);
  for (const e of [...sink.decisions, ...sink.outcomes]) assert.ok(e.trace_id);
  sink.outcomes.forEach((o) => schemas.outcome(o));
});

test("run(): without successFn a result waits for the caller's report, which reports the last attempt", async () => {
  async function first(): Promise<string> {
    throw new Error("down");
  }
  async function second(): Promise<string> {
    await new Promise((r) => setTimeout(r, 5));
    return "ok";
  }
  const [router, sink] = make({ paths: [["first", first], ["second", second]] });
  await router.start();
  const d0 = router.decide({ forcePath: "first" });
  d0.report(true);
  assert.equal(await router.run(), "ok");
  // Either "second" answered at once, or "first" failed and the retry answered.
  assert.equal(router.report(true), true);
  const last = sink.decisions[sink.decisions.length - 1]!;
  assert.equal(last.path, "second");
  const verdict = sink.outcomes.find((o) => o.trace_id === last.trace_id)!;
  assert.equal(verdict.success, true);
  assert.ok((verdict.latency_ms as number) >= 4);
  assert.equal(router.stats().duplicateReports, 0);
});

test("run(): when every attempt fails the last error is thrown", async () => {
  const [router, sink] = make({ paths: [["x", async () => { throw new Error("x broke"); }], ["y", async () => { throw new Error("y broke"); }]] });
  await assert.rejects(router.run(), /broke/);
  assert.equal(sink.outcomes.length, 2);
  assert.ok(sink.outcomes.every((o) => o.success === false));
});

test("completion(): an answer waits for the verdict; forceModel pins a model; events carry usage", async () => {
  const [router, sink] = make({});
  const resp = await router.completion(messages);
  assert.ok(resp instanceof Completion);
  assert.equal(resp.text, `${resp.model} says: hello`);
  assert.equal(resp.choices[0]!.message.content, resp.text);
  assert.equal(sink.outcomes.length, 0);
  router.report(true);
  assert.equal(sink.outcomes.length, 1);
  assert.equal(sink.outcomes[0]!.prompt_tokens, 10);
  const forced = await router.completion(messages, { forceModel: "m2", max_tokens: 5 });
  assert.deepEqual([forced.model, forced.decision.reason], ["m2", "forced"]);
  assert.equal(server.requests[server.requests.length - 1]!.body.max_tokens, 5);
  schemas.outcome(sink.outcomes[0]);
});

test("completion(): a conversation is one decision, one outcome with the turns summed", async () => {
  const [router, sink] = make({});
  const conversation = [{ role: "user", content: "I need help" }];
  const first = await router.completion(conversation);
  conversation.push({ role: "assistant", content: first.choices[0]!.message.content as string });
  conversation.push({ role: "user", content: "That did not work" });
  const second = await router.completion(conversation, { continueFrom: first });
  assert.equal(second.model, first.model);
  assert.equal(second.decision, first.decision);
  router.report(false, { failureCategory: "user_rejected" });
  assert.equal(sink.decisions.length, 1);
  assert.equal(sink.outcomes.length, 1);
  assert.equal(sink.outcomes[0]!.prompt_tokens, 10 + 30);
  assert.ok(Math.abs((sink.outcomes[0]!.latency_ms as number) - (first.latencyMs + second.latencyMs)) < 1e-6);
  await assert.rejects(router.completion(conversation, { continueFrom: first }), /already reported by report\(\)/);
});

test("completion(): provider failures are reported with their category and thrown", async () => {
  const [router, sink] = make({ paths: ["m-429", "m-500", "m-garbage", "m-slow"] });
  const cases: [string, string, number | null][] = [
    ["m-429", "rate_limited", 429],
    ["m-500", "provider_error", 500],
    ["m-garbage", "invalid_output", null],
    ["m-slow", "timeout", null],
  ];
  for (const [model, category, status] of cases) {
    await assert.rejects(router.completion(messages, { forceModel: model }), (e: Error) => {
      assert.ok(e instanceof ProviderError, String(e));
      assert.deepEqual([e.category, e.statusCode, e.model], [category, status, model]);
      return true;
    });
  }
  assert.deepEqual(sink.outcomes.map((o) => o.failure_category), cases.map((c) => c[1]));
  const refused = make({ defaultProvider: new Provider({ baseUrl: "http://127.0.0.1:9/v1" }) })[0];
  await assert.rejects(refused.completion(messages), (e: Error) => e instanceof ProviderError && e.category === "connection_error");
  await assert.rejects(router.completion([]), (e: Error) => e instanceof ArgumentError && /messages must be a non-empty array/.test(e.message));
  await assert.rejects(router.completion(messages, { model: "x" }), /model cannot be passed as a parameter/);
});

test("completion({ stream: true }): chunks as they come, the answer judged at the end", async () => {
  const [router, sink] = make({ successFn: (c: Completion) => c.text.includes("hello") });
  const stream = await router.completion(messages, { stream: true });
  const parts: string[] = [];
  for await (const chunk of stream) parts.push(chunk.choices[0]?.delta.content ?? "");
  assert.equal(parts.join(""), `${stream.model} says: hello`);
  assert.equal(stream.completion.text, parts.join(""));
  assert.equal(sink.outcomes.length, 1);
  assert.equal(sink.outcomes[0]!.success, true);
  assert.equal(typeof sink.outcomes[0]!.time_to_first_token_ms, "number");
  assert.equal(sink.outcomes[0]!.completion_tokens, 3);
  schemas.outcome(sink.outcomes[0]);
  const requested = server.requests[server.requests.length - 1]!.body;
  assert.deepEqual([requested.stream, requested.stream_options], [true, { include_usage: true }]);
});

test("a stream left before its end is reported as cancelled", async () => {
  const [router, sink] = make({});
  const stream = await router.completion(messages, { stream: true });
  for await (const _ of stream) break;
  assert.equal(sink.outcomes.length, 1);
  assert.equal(sink.outcomes[0]!.failure_category, "cancelled");
  assert.throws(() => stream.completion, /not been read to its end/);
});

test("completion() follows the snapshot like decide()", async () => {
  const sink = new InMemorySink();
  const router = new Router({
    goal: "chat",
    paths: ["m1", "m2"],
    eventSink: sink,
    snapshotSource: new StaticSnapshotSource(snapshot("chat", 1, { m1: { alpha: 2, beta: 98, n: 100 }, m2: { alpha: 98, beta: 2, n: 100 } })),
    defaultProvider: new Provider({ baseUrl: server.baseUrl }),
    explorationRate: 0,
    logger: silentLogger,
  });
  routers.push(router);
  await router.start();
  for (let i = 0; i < 5; i++) assert.equal((await router.completion(messages)).model, "m2");
});
