/**
 * `completion()`: chat completions from the chosen model, plain or streamed, as one turn of a
 * decision (a conversation's turns share one). `Call` holds what one turn decides after each
 * step (report, throw, return); the stream class only moves bytes.
 */

import { cancelled, settleFailure, settleResult, type CallHost } from "./calls.js";
import { Decision, type FailureCategory } from "./decision.js";
import { ArgumentError, ProviderError } from "./errors.js";
import {
  checkRequest,
  Completion,
  parseAnswer,
  Provider,
  ProviderFailure,
  statusFailure,
  StreamAssembler,
  type ChatCompletionChunk,
  type ChatMessage,
  type Choice,
  type Usage,
} from "./providers.js";
import { show } from "./validate.js";

export { Completion, type ChatMessage, type ChatCompletionChunk };

const BY = "completion()";

export interface CompletionOptions {
  /** Pin a model for a new decision (reason `forced`). */
  forceModel?: string;
  /** Make this call a further turn of an earlier completion's (or an open Decision's) decision. */
  continueFrom?: Completion | Decision;
  stream?: false;
  /** Cancels the request; reported as `cancelled`. */
  signal?: AbortSignal;
  /** Anything else goes into the request body (max_tokens, temperature, tools, ...). */
  [param: string]: unknown;
}

export interface StreamOptions extends Omit<CompletionOptions, "stream"> {
  stream: true;
}

const OWN = new Set(["forceModel", "continueFrom", "stream", "signal"]);

function classifyError(error: unknown, timedOut: boolean): FailureCategory {
  if (timedOut) return "timeout";
  if (cancelled(error)) return "cancelled";
  if (error instanceof TypeError) return "connection_error"; // fetch failed: refused, reset, DNS
  return "other";
}

class Call {
  readonly url: string;
  readonly body: string;
  started = 0;
  timedOut = false;

  constructor(
    readonly host: CallHost,
    readonly decision: Decision,
    readonly provider: Provider,
    messages: ChatMessage[],
    params: Record<string, unknown>,
  ) {
    this.url = `${provider.baseUrl}/chat/completions`;
    this.body = JSON.stringify({ model: decision.path, messages, ...params });
  }

  elapsedMs(): number {
    return this.started ? performance.now() - this.started : 0;
  }

  fail(category: FailureCategory, message: string, status: number | null = null, cause?: unknown): ProviderError {
    settleFailure(this.decision, { latencyMs: this.elapsedMs() }, category, BY);
    return new ProviderError(message, {
      model: this.decision.path,
      category,
      traceId: this.decision.traceId,
      statusCode: status,
      cause,
    });
  }

  failed(failure: ProviderFailure): ProviderError {
    return this.fail(failure.category, failure.message, failure.status, failure);
  }

  /** The call threw: report it; what to throw instead. */
  error(error: unknown): unknown {
    if (error instanceof ProviderError) return error;
    if (error instanceof ProviderFailure) return this.failed(error);
    const category = classifyError(error, this.timedOut);
    if (category === "cancelled") {
      settleFailure(this.decision, { latencyMs: this.elapsedMs() }, category, BY);
      return error;
    }
    const message = error instanceof Error ? `${error.message}${error.cause ? `: ${String(error.cause)}` : ""}` : String(error);
    return this.fail(category, `request failed: ${message}`, null, error);
  }

  async answered(
    choices: Choice[],
    usage: Usage | null,
    body: Record<string, unknown>,
    firstTokenMs: number | null = null,
  ): Promise<Completion> {
    const latencyMs = this.elapsedMs();
    const prompt = usage?.prompt_tokens ?? null;
    const completionTokens = usage?.completion_tokens ?? null;
    const result = new Completion(this.decision, this.decision.path, choices, usage, body, latencyMs, firstTokenMs);
    const turn = {
      latencyMs,
      costUsd: this.provider.cost(prompt, completionTokens),
      promptTokens: prompt,
      completionTokens,
      timeToFirstTokenMs: firstTokenMs,
    };
    settleResult(this.decision, turn, await this.host.judge.verdict(result), BY);
    return result;
  }
}

/**
 * The chunks of a streamed completion as they arrive: `for await (const chunk of stream)`.
 * Breaking out of the loop (or `close()`) before the end reports the decision as cancelled.
 * `completion` is the assembled answer after the end.
 */
export class CompletionStream implements AsyncIterable<ChatCompletionChunk> {
  private readonly assembler = new StreamAssembler();
  private finished = false;
  private result: Completion | null = null;

  constructor(
    private readonly call: Call,
    private readonly response: Response,
    private readonly abort: AbortController,
    private readonly done: () => void,
  ) {}

  get decision(): Decision {
    return this.call.decision;
  }

  get model(): string {
    return this.call.decision.path;
  }

  /** The whole answer, once the stream has been read to its end. */
  get completion(): Completion {
    if (this.result === null) throw new Error("the stream has not been read to its end");
    return this.result;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ChatCompletionChunk> {
    if (this.finished) return;
    const reader = this.response.body!.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (value !== undefined) buffer += decoder.decode(value, { stream: true });
        if (done) buffer += decoder.decode();
        let newline: number;
        while ((newline = buffer.indexOf("\n")) >= 0 || (done && buffer.length > 0)) {
          const end = newline >= 0 ? newline : buffer.length;
          const line = buffer.slice(0, end).replace(/\r$/, "");
          buffer = buffer.slice(end + 1);
          const chunk = this.assembler.feed(line, this.call.elapsedMs());
          if (chunk !== null) yield chunk;
          if (this.assembler.done) break;
        }
        if (done || this.assembler.done) break;
      }
      this.finished = true;
      const [choices, usage, body] = this.assembler.result();
      this.result = await this.call.answered(choices, usage, body, this.assembler.timeToFirstTokenMs);
    } catch (error) {
      this.finished = true;
      throw this.call.error(error);
    } finally {
      if (!this.finished) this.closeEarly();
      this.done();
      reader.releaseLock();
      void this.response.body?.cancel().catch(() => undefined);
    }
  }

  private closeEarly(): void {
    if (this.finished) return;
    this.finished = true;
    this.done();
    settleFailure(this.call.decision, { latencyMs: this.call.elapsedMs() }, "cancelled", BY);
    this.abort.abort();
  }

  /** Stop reading: before the end, the decision is reported as cancelled. */
  async close(): Promise<void> {
    this.closeEarly();
    await this.response.body?.cancel().catch(() => undefined);
  }
}

/** The completions of a router whose paths are model names. */
export class ModelCalls {
  private readonly providers: Map<string, Provider>;

  constructor(
    private readonly host: CallHost,
    providers: Readonly<Record<string, Provider>>,
    private defaultProvider: Provider | null,
  ) {
    for (const [model, p] of Object.entries(providers)) {
      if (!(p instanceof Provider)) throw new ArgumentError(`providers[${show(model)}] must be a Provider, got ${show(p)}`);
    }
    this.providers = new Map(Object.entries(providers));
  }

  private provider(model: string): Provider {
    return this.providers.get(model) ?? (this.defaultProvider ??= Provider.fromOpenAIEnv());
  }

  private decision(forceModel: string | null, continueFrom: unknown): Decision {
    const host = this.host;
    if (continueFrom === undefined || continueFrom === null) {
      const current = host.current();
      if (forceModel !== null && current !== undefined && current.path === forceModel && current.madeBy === BY && !current.reported) {
        host.warnings.warn(
          "force_model",
          `forceModel ${forceModel} makes a new decision, and this context's completion on that model ` +
            `(trace ${current.traceId}) is still open: to continue a conversation as one decision, ` +
            "pass continueFrom: the earlier completion",
        );
      }
      return host.decide(null, forceModel, BY);
    }
    if (forceModel !== null) throw new ArgumentError("pass forceModel or continueFrom, not both");
    const decision = continueFrom instanceof Completion ? continueFrom.decision : continueFrom;
    if (!(decision instanceof Decision)) {
      throw new ArgumentError(`continueFrom must be a Completion or a Decision, got ${show(continueFrom)}`);
    }
    host.resume(decision, "continueFrom");
    return decision;
  }

  async completion(messages: readonly ChatMessage[], options: CompletionOptions | StreamOptions): Promise<Completion | CompletionStream> {
    if (typeof options !== "object" || options === null) {
      throw new ArgumentError(`completion() options must be an object, got ${show(options)}`);
    }
    const stream = options.stream ?? false;
    if (typeof stream !== "boolean") throw new ArgumentError(`stream must be a boolean, got ${show(stream)}`);
    const forceModel = options.forceModel ?? null;
    if (forceModel !== null && typeof forceModel !== "string") {
      throw new ArgumentError(`forceModel must be a model name, got ${show(forceModel)}`);
    }
    let params: Record<string, unknown> = Object.fromEntries(Object.entries(options).filter(([k]) => !OWN.has(k)));
    if (stream) {
      params = { stream: true, stream_options: { include_usage: true }, ...params };
      if (params.stream_options === null) delete params.stream_options;
    }
    // Arguments are checked before deciding, so a bad call leaves no open decision.
    const checked = checkRequest(messages, params);
    const decision = this.decision(forceModel, options.continueFrom);
    const call = new Call(this.host, decision, this.provider(decision.path), checked, params);
    const abort = new AbortController();
    const timer = setTimeout(() => {
      call.timedOut = true;
      abort.abort(new DOMException("the provider did not answer in time", "TimeoutError"));
    }, call.provider.timeoutMs);
    timer.unref();
    const user = options.signal as AbortSignal | undefined;
    const onAbort = () => abort.abort(user?.reason);
    if (user?.aborted) onAbort();
    user?.addEventListener("abort", onAbort, { once: true });
    let response: Response;
    try {
      call.started = performance.now();
      response = await fetch(call.url, { method: "POST", headers: call.provider.requestHeaders(), body: call.body, signal: abort.signal });
      if (!stream || response.status >= 300) {
        const text = await response.text();
        clearTimeout(timer);
        if (response.status >= 300) throw call.failed(statusFailure(response.status, text));
        let answer: ReturnType<typeof parseAnswer>;
        try {
          answer = parseAnswer(text);
        } catch (failure) {
          throw call.error(failure);
        }
        return await call.answered(...answer);
      }
    } catch (error) {
      clearTimeout(timer);
      user?.removeEventListener("abort", onAbort);
      if (error instanceof ProviderError) throw error;
      throw call.error(error);
    }
    // A stream: the provider's timeout bounds the whole answer, as for a plain call.
    return new CompletionStream(call, response, abort, () => {
      clearTimeout(timer);
      user?.removeEventListener("abort", onAbort);
    });
  }
}
