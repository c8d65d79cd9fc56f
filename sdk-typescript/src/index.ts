/**
 * What Node services embed: `Router` decides a path per request and reports how it went.
 *
 *     import { Router } from "@outroute/sdk";
 *     const router = new Router({ goal: "summarize", paths: ["gpt-4o", "claude-sonnet-4"] });
 *     const decision = router.decide();
 *     ...
 *     decision.report(true, { latencyMs: 840 });
 */

export { type SnapshotSource } from "./cache.js";
export { CompletionStream, type CompletionOptions, type StreamOptions } from "./completions.js";
export { Decision, FAILURE_CATEGORIES, type FailureCategory, type ReportFields } from "./decision.js";
export { KafkaEventSink, type EmitterStats, type EventKind, type EventSink } from "./emitter.js";
export { ArgumentError, NoCurrentDecision, OutrouteError, ProviderError, RouterError } from "./errors.js";
export { consoleLogger, silentLogger, type Logger } from "./log.js";
export { partitionOf } from "./murmur2.js";
export {
  connectionFromEnv,
  DEFAULT_CACHE,
  DEFAULT_CONNECTION,
  DEFAULT_EMITTER,
  type CacheOptions,
  type ConnectionOptions,
  type EmitterOptions,
} from "./options.js";
export { InvalidSnapshot, type PathStatus, type PathView, type PolicyView } from "./policy.js";
export { type PathOverride } from "./overrides.js";
export {
  Completion,
  Provider,
  type ChatCompletionChunk,
  type ChatMessage,
  type Choice,
  type ProviderOptions,
  type Usage,
} from "./providers.js";
export {
  Router,
  SDK_VERSION,
  type DecideOptions,
  type PathSpec,
  type RouterOptions,
  type RouterStats,
} from "./router.js";
export { REASONS, type Reason } from "./sampling.js";
