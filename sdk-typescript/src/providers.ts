/**
 * OpenAI-compatible chat completions on the wire: the provider settings, requests, the
 * response types, error classification, and the assembly of a streamed answer (pure).
 */

import type { Decision, FailureCategory } from "./decision.js";
import { ArgumentError } from "./errors.js";
import { checkKeys, checkNumber, show } from "./validate.js";

export const OPENAI_BASE_URL = "https://api.openai.com/v1";

export interface ProviderOptions {
  baseUrl?: string;
  apiKey?: string | null;
  timeoutMs?: number;
  /** USD per 1,000 prompt and completion tokens; when set, reports carry costUsd. */
  pricePer1kPrompt?: number | null;
  pricePer1kCompletion?: number | null;
  /** Sent with every request, e.g. `{ "api-key": ... }` for Azure OpenAI's v1 endpoint. */
  headers?: Readonly<Record<string, string>>;
}

/** An OpenAI-compatible endpoint: `{baseUrl}/chat/completions`. */
export class Provider {
  readonly baseUrl: string;
  readonly timeoutMs: number;
  readonly pricePer1kPrompt: number | null;
  readonly pricePer1kCompletion: number | null;
  readonly headers: Readonly<Record<string, string>>;
  readonly #apiKey: string | null;

  constructor(options: ProviderOptions = {}) {
    checkKeys("Provider", options, ["baseUrl", "apiKey", "timeoutMs", "pricePer1kPrompt", "pricePer1kCompletion", "headers"]);
    const baseUrl = options.baseUrl ?? OPENAI_BASE_URL;
    if (typeof baseUrl !== "string" || !/^https?:\/\//.test(baseUrl)) {
      throw new ArgumentError(`baseUrl must be an http(s) URL, got ${show(baseUrl)}`);
    }
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.timeoutMs = checkNumber("timeoutMs", options.timeoutMs ?? 60_000, { positive: true });
    this.pricePer1kPrompt = options.pricePer1kPrompt == null ? null : checkNumber("pricePer1kPrompt", options.pricePer1kPrompt, { min: 0 });
    this.pricePer1kCompletion =
      options.pricePer1kCompletion == null ? null : checkNumber("pricePer1kCompletion", options.pricePer1kCompletion, { min: 0 });
    const headers = options.headers ?? {};
    if (!Object.values(headers).every((v) => typeof v === "string")) {
      throw new ArgumentError("headers must map header names to string values");
    }
    this.headers = Object.freeze({ ...headers });
    this.#apiKey = options.apiKey ?? null;
  }

  /** `OPENAI_BASE_URL` (default api.openai.com) and `OPENAI_API_KEY`. */
  static fromOpenAIEnv(env: NodeJS.ProcessEnv = process.env): Provider {
    return new Provider({ baseUrl: env.OPENAI_BASE_URL || OPENAI_BASE_URL, apiKey: env.OPENAI_API_KEY || null });
  }

  requestHeaders(): Record<string, string> {
    const headers: Record<string, string> = { "content-type": "application/json", ...this.headers };
    if (this.#apiKey !== null) headers.authorization = `Bearer ${this.#apiKey}`;
    return headers;
  }

  cost(promptTokens: number | null, completionTokens: number | null): number | null {
    if (this.pricePer1kPrompt === null || this.pricePer1kCompletion === null) return null;
    if (promptTokens === null || completionTokens === null) return null;
    return (promptTokens * this.pricePer1kPrompt + completionTokens * this.pricePer1kCompletion) / 1000;
  }

  toString(): string {
    return `Provider(baseUrl=${this.baseUrl})`;
  }
}

export interface ChatMessage {
  role: string;
  content?: string | null;
  [key: string]: unknown;
}

export interface Usage {
  prompt_tokens: number | null;
  completion_tokens: number | null;
  total_tokens: number | null;
  [key: string]: unknown;
}

export interface Choice {
  index: number;
  message: ChatMessage;
  finish_reason: string | null;
  [key: string]: unknown;
}

/** One `data:` event of a streamed answer. */
export interface ChatCompletionChunk {
  id?: string | null;
  model?: string | null;
  choices: {
    index: number;
    delta: { role?: string | null; content?: string | null; tool_calls?: Record<string, unknown>[] | null };
    finish_reason?: string | null;
  }[];
  usage?: Usage | null;
  [key: string]: unknown;
}

/**
 * A chat completion, and the decision that chose its model. `model` is the path (the model
 * name routed to; pass the completion as `continueFrom` to keep it for the next turn);
 * `response.model` is what the provider calls it.
 */
export class Completion {
  constructor(
    readonly decision: Decision,
    readonly model: string,
    readonly choices: readonly Choice[],
    readonly usage: Usage | null,
    readonly response: Record<string, unknown>,
    readonly latencyMs: number,
    readonly timeToFirstTokenMs: number | null = null,
  ) {}

  /** The first choice's text ("" when it has none, e.g. a tool call). */
  get text(): string {
    const content = this.choices[0]?.message.content;
    return typeof content === "string" ? content : "";
  }

  get promptTokens(): number | null {
    return this.usage?.prompt_tokens ?? null;
  }

  get completionTokens(): number | null {
    return this.usage?.completion_tokens ?? null;
  }
}

/** Internal: a classified provider failure, turned into ProviderError by the router. */
export class ProviderFailure extends Error {
  constructor(
    message: string,
    readonly category: FailureCategory,
    readonly status: number | null = null,
  ) {
    super(message);
  }
}

/** The messages as JSON-ready objects; ArgumentError naming what is wrong. */
export function checkRequest(messages: unknown, params: Record<string, unknown>): ChatMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new ArgumentError("messages must be a non-empty array of chat messages");
  }
  for (const key of ["model", "messages"]) {
    if (key in params) throw new ArgumentError(`${key} cannot be passed as a parameter; the router sets it`);
  }
  return messages.map((m: unknown, i) => {
    if (typeof m !== "object" || m === null || typeof (m as ChatMessage).role !== "string") {
      throw new ArgumentError(`messages[${i}] must be a chat message (an object with a role), got ${show(m)}`);
    }
    return { ...(m as ChatMessage) };
  });
}

export function classifyStatus(status: number): FailureCategory {
  if (status === 429) return "rate_limited";
  if (status === 401 || status === 403) return "auth_error";
  if ([400, 404, 409, 413, 422].includes(status)) return "invalid_request";
  if (status === 408) return "timeout";
  return "provider_error";
}

function json(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function errorDetail(body: unknown, text: string): string {
  const error = typeof body === "object" && body !== null ? (body as Record<string, unknown>).error : undefined;
  if (typeof error === "object" && error !== null && typeof (error as Record<string, unknown>).message === "string") {
    return ((error as Record<string, unknown>).message as string).slice(0, 200);
  }
  return text.slice(0, 200);
}

/** ProviderFailure for a non-2xx answer. */
export function statusFailure(status: number, text: string): ProviderFailure {
  return new ProviderFailure(`provider answered HTTP ${status}: ${errorDetail(json(text), text)}`, classifyStatus(status), status);
}

function count(value: unknown): number | null {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 ? value : null;
}

/** Token counts; a count a provider leaves out or garbles is null. */
export function usageOf(value: unknown): Usage | null {
  if (typeof value !== "object" || value === null) return null;
  const u = value as Record<string, unknown>;
  return { ...u, prompt_tokens: count(u.prompt_tokens), completion_tokens: count(u.completion_tokens), total_tokens: count(u.total_tokens) };
}

/** The validated answer of a 2xx body; throws ProviderFailure (invalid_output). */
export function parseAnswer(text: string): [Choice[], Usage | null, Record<string, unknown>] {
  const body = json(text);
  if (body === undefined) throw new ProviderFailure("provider answered with a body that is not JSON", "invalid_output");
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new ProviderFailure("provider answered with JSON that is not an object", "invalid_output");
  }
  const record = body as Record<string, unknown>;
  const choices = record.choices;
  if (!Array.isArray(choices) || choices.length === 0) {
    throw new ProviderFailure("provider response is not a chat completion: choices: must be a non-empty list", "invalid_output");
  }
  const checked = choices.map((c: unknown, i): Choice => {
    const choice = c as Record<string, unknown>;
    const message = choice?.message as Record<string, unknown> | undefined;
    if (typeof message !== "object" || message === null) {
      throw new ProviderFailure(`provider response is not a chat completion: choices.${i}.message: required`, "invalid_output");
    }
    return {
      ...choice,
      index: typeof choice.index === "number" ? choice.index : 0,
      message: { ...message, role: typeof message.role === "string" ? message.role : "assistant" } as ChatMessage,
      finish_reason: typeof choice.finish_reason === "string" ? choice.finish_reason : null,
    };
  });
  return [checked, usageOf(record.usage), record];
}

interface Building {
  role: string;
  content: string[];
  tools: Map<number, Record<string, unknown>>;
  finish: string | null;
}

/**
 * Reads the lines of a server-sent event stream of chunks, and assembles the answer. Pure: the
 * caller feeds lines and the time each arrived (ms since the request was sent).
 */
export class StreamAssembler {
  private readonly building = new Map<number, Building>();
  private id: string | null = null;
  private model: string | null = null;
  private usage: Usage | null = null;
  done = false;
  timeToFirstTokenMs: number | null = null;

  /** The chunk this line carries, or null (blank lines, comments, other fields, `[DONE]`). */
  feed(line: string, elapsedMs: number): ChatCompletionChunk | null {
    if (!line.startsWith("data:")) return null;
    const data = line.slice(5).trim();
    if (data === "[DONE]") {
      this.done = true;
      return null;
    }
    const payload = json(data);
    if (typeof payload === "object" && payload !== null && "error" in payload && !("choices" in payload)) {
      throw new ProviderFailure(`provider failed mid-stream: ${errorDetail(payload, data)}`, "provider_error");
    }
    if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
      throw new ProviderFailure(`stream event is not a JSON object: ${data.slice(0, 200)}`, "invalid_output");
    }
    const chunk = payload as ChatCompletionChunk;
    const choices = chunk.choices ?? [];
    if (!Array.isArray(choices)) {
      throw new ProviderFailure("stream event is not a chat completion chunk: choices: must be a list", "invalid_output");
    }
    chunk.choices = choices.map((c) => ({ ...c, index: typeof c?.index === "number" ? c.index : 0, delta: c?.delta ?? {} }));
    this.take(chunk, elapsedMs);
    return chunk;
  }

  private take(chunk: ChatCompletionChunk, elapsedMs: number): void {
    this.id ??= typeof chunk.id === "string" ? chunk.id : null;
    this.model ??= typeof chunk.model === "string" ? chunk.model : null;
    if (chunk.usage != null) this.usage = usageOf(chunk.usage);
    for (const part of chunk.choices) {
      let choice = this.building.get(part.index);
      if (choice === undefined) {
        choice = { role: "assistant", content: [], tools: new Map(), finish: null };
        this.building.set(part.index, choice);
      }
      const delta = part.delta;
      if (delta.role) choice.role = delta.role;
      if (delta.content) choice.content.push(delta.content);
      for (const call of delta.tool_calls ?? []) mergeToolCall(choice.tools, call);
      if ((delta.content || (delta.tool_calls && delta.tool_calls.length > 0)) && this.timeToFirstTokenMs === null) {
        this.timeToFirstTokenMs = elapsedMs;
      }
      if (part.finish_reason != null) choice.finish = part.finish_reason;
    }
  }

  /** The assembled answer; ProviderFailure when the stream ended before it was complete. */
  result(): [Choice[], Usage | null, Record<string, unknown>] {
    const finished = this.building.size > 0 && [...this.building.values()].every((c) => c.finish);
    if (!(this.done || finished)) throw new ProviderFailure("stream ended before the answer was complete", "connection_error");
    if (this.building.size === 0) throw new ProviderFailure("stream carried no choices", "invalid_output");
    const choices: Choice[] = [...this.building.keys()].sort((a, b) => a - b).map((index) => {
      const c = this.building.get(index)!;
      const message: ChatMessage = { role: c.role, content: c.content.join("") };
      if (c.tools.size > 0) message.tool_calls = [...c.tools.keys()].sort((a, b) => a - b).map((i) => c.tools.get(i));
      return { index, message, finish_reason: c.finish };
    });
    const body = { id: this.id, object: "chat.completion", model: this.model, choices, usage: this.usage };
    return [choices, this.usage, body];
  }
}

function mergeToolCall(calls: Map<number, Record<string, unknown>>, part: Record<string, unknown>): void {
  const index = part.index ?? 0;
  if (typeof index !== "number") return;
  let call = calls.get(index);
  if (call === undefined) {
    call = { type: "function", function: { arguments: "" } };
    calls.set(index, call);
  }
  for (const key of ["id", "type"]) if (typeof part[key] === "string") call[key] = part[key];
  const fn = part.function as Record<string, unknown> | undefined;
  const target = call.function as Record<string, unknown>;
  if (typeof fn === "object" && fn !== null) {
    if (typeof fn.name === "string") target.name = fn.name;
    if (typeof fn.arguments === "string") target.arguments = (target.arguments as string) + fn.arguments;
  }
}
