/**
 * The Router: decide a path per request in microseconds, report how it went.
 *
 * `decide()` reads an immutable policy that the process's policy feed keeps fresh from Redis
 * (feed.ts), and that the router's own outcomes update until a snapshot counts them
 * (local.ts); it samples a path and hands the DecisionEvent to the emitter; it is
 * synchronous, does no I/O and never throws for a valid router. Kafka or Redis trouble
 * degrades to counted drops and a stale policy, never to an error in the host's request.
 * Behaviour, events and defaults are those of the Python SDK's `producer_sdk.Router`.
 */

import { AsyncLocalStorage } from "node:async_hooks";
import { randomBytes } from "node:crypto";

import { checkAmong, normalizePaths } from "./arguments.js";
import { PolicyCache, type FeedDriver, type SnapshotSource } from "./cache.js";
import { CallablePaths, type PathFn } from "./callables.js";
import { Judge, type CallHost } from "./calls.js";
import {
  ModelCalls,
  type CompletionOptions,
  type StreamOptions,
  type Completion,
  type CompletionStream,
  type ChatMessage,
} from "./completions.js";
import { Decision, type Outcome, type ReportFields } from "./decision.js";
import { KafkaEventSink, type EventSink } from "./emitter.js";
import { EventEncoder, nowMicros } from "./encode.js";
import { ArgumentError, NoCurrentDecision } from "./errors.js";
import { sharedFeed, SourceLoop } from "./feed.js";
import { Ledger } from "./ledger.js";
import { LocalEvidence, rewardOf } from "./local.js";
import { consoleLogger, OnceLog, type Logger } from "./log.js";
import {
  cacheOptions,
  connectionFromEnv,
  connectionOptions,
  emitterOptions,
  type CacheOptions,
  type ConnectionOptions,
  type EmitterOptions,
} from "./options.js";
import type { PolicyView } from "./policy.js";
import type { Provider } from "./providers.js";
import { Rng } from "./random.js";
import { samplingParams, type Reason, type SamplingParams } from "./sampling.js";
import {
  checkContext,
  checkIdentifier,
  checkKeys,
  checkNumber,
  show,
  type Context,
} from "./validate.js";

export const SDK_VERSION = "0.1.0";
const SEVEN_DAYS_MS = 7 * 24 * 3600 * 1000;

/** A path: a name (a model, a tool), a named function, or a [name, function] pair. */
export type PathSpec = string | PathFn | readonly [string, PathFn];

export interface RouterOptions {
  goal: string;
  /** Names, or functions (named, or [name, fn] pairs), never a mix. Most reliable first. */
  paths: readonly PathSpec[];
  /** Judges what a path returned (run(), completion()); a rejected result is a failure. */
  successFn?: (result: never) => boolean | Promise<boolean>;
  /** Count a returned value (or a 200 answer) as a success when there is no successFn. */
  successOnReturn?: boolean;
  explorationRate?: number;
  minSamples?: number;
  /** Paths with no outcome for this long are preferred by exploration (default 7 days). */
  stalenessMs?: number;
  tieMargin?: number;
  /** The floor of an alerted path's recovery probe rate (default 0.01). */
  recoveryProbeRate?: number;
  /** An alerted path's probe rate when this router first sees the alert (default 0.03). */
  probeStart?: number;
  /** Decisions over which the probe rate halves towards `recoveryProbeRate` (default 200). */
  probeHalfLife?: number;
  /**
   * Fold this router's own outcomes into its policy until a snapshot counts them, and watch
   * them for a sudden drop of a path (default true; see "The router's own outcomes" in the
   * README).
   */
  localOutcomes?: boolean;
  /** Where Kafka and Redis are (default: both on 127.0.0.1, prefixes "outroute"). */
  connection?: Partial<ConnectionOptions>;
  service?: string;
  /** run(): at most this many decisions per call (each among the paths not tried yet). */
  maxAttempts?: number;
  emitter?: Partial<EmitterOptions>;
  cache?: Partial<CacheOptions>;
  /** completion(): an OpenAI-compatible endpoint per model. */
  providers?: Readonly<Record<string, Provider>>;
  /** completion(): the endpoint of models not in `providers` (default: OPENAI_BASE_URL/KEY). */
  defaultProvider?: Provider;
  /** Where events go (default: Kafka). A sink passed in is flushed on close, not closed. */
  eventSink?: EventSink;
  /**
   * Where snapshots come from: a source or a function that makes one, read in a loop of this
   * router's own (default: Redis, through the process's feed shared by every router of the
   * same Redis URL and key prefix).
   */
  snapshotSource?: SnapshotSource | (() => SnapshotSource);
  seed?: number;
  logger?: Logger;
}

const OPTION_KEYS = [
  "goal",
  "paths",
  "successFn",
  "successOnReturn",
  "explorationRate",
  "minSamples",
  "stalenessMs",
  "tieMargin",
  "recoveryProbeRate",
  "probeStart",
  "probeHalfLife",
  "localOutcomes",
  "connection",
  "service",
  "maxAttempts",
  "emitter",
  "cache",
  "providers",
  "defaultProvider",
  "eventSink",
  "snapshotSource",
  "seed",
  "logger",
];

/** Counters of one router in this process. */
export interface RouterStats {
  readonly decisions: number;
  readonly reports: number;
  readonly duplicateReports: number;
  readonly emitted: number;
  readonly delivered: number;
  readonly pending: number;
  readonly dropped: number;
  readonly failed: number;
  readonly policyLoaded: boolean;
  readonly policyVersion: number | null;
  readonly policyStale: boolean;
  readonly policyErrors: number;
}

export interface DecideOptions {
  /** Offer only these paths (the event's candidates are they, in the router's order). */
  among?: readonly string[];
  /** A small flat object of labels (at most 32), carried by the DecisionEvent. */
  context?: Record<string, string | number | boolean>;
  /** Use this path (reason `forced`); it must be one of the router's paths. */
  forcePath?: string;
}

/** Routes one goal's requests across its paths. One per goal per process. */
export class Router {
  readonly goal: string;
  readonly paths: readonly string[];
  readonly params: SamplingParams;
  readonly service: string | null;
  private readonly index: Map<string, number>;
  private readonly sink: EventSink;
  private readonly ownsSink: boolean;
  private readonly cache: PolicyCache;
  private readonly encoder: EventEncoder;
  private readonly rng: Rng;
  private readonly current = new AsyncLocalStorage<{ decision?: Decision }>();
  private readonly warnings: OnceLog;
  private readonly ledger: Ledger;
  private readonly idPrefix = `${randomBytes(6).toString("hex")}-`;
  private readonly callables: CallablePaths | null;
  private readonly models: ModelCalls | null;
  private decisions = 0;
  private started = false;
  private closed = false;

  constructor(options: RouterOptions) {
    if (typeof options !== "object" || options === null) {
      throw new ArgumentError(`Router options must be an object, got ${show(options)}`);
    }
    checkKeys("Router", options, OPTION_KEYS);
    this.goal = checkIdentifier("goal", options.goal);
    const [names, fns] = normalizePaths(options.paths);
    this.paths = Object.freeze(names);
    if (options.successFn !== undefined && typeof options.successFn !== "function") {
      throw new ArgumentError(`successFn must be a function, got ${show(options.successFn)}`);
    }
    const successOnReturn = options.successOnReturn ?? false;
    if (typeof successOnReturn !== "boolean") {
      throw new ArgumentError(`successOnReturn must be a boolean, got ${show(successOnReturn)}`);
    }
    if (successOnReturn && options.successFn !== undefined) {
      throw new ArgumentError("pass successFn or successOnReturn: true, not both");
    }
    this.params = samplingParams({
      explorationRate: options.explorationRate,
      minSamples: options.minSamples,
      tieMargin: options.tieMargin,
      recoveryProbeRate: options.recoveryProbeRate,
      probeStart: options.probeStart,
      probeHalfLife: options.probeHalfLife,
      localOutcomes: options.localOutcomes,
    });
    const stalenessMs = checkNumber("stalenessMs", options.stalenessMs ?? SEVEN_DAYS_MS, {
      positive: true,
    });
    this.service = options.service === undefined ? null : checkIdentifier("service", options.service);
    const maxAttempts = checkNumber("maxAttempts", options.maxAttempts ?? 2, { integer: true, min: 1 });
    const connection = connectionOptions(options.connection);
    const { redisUrl, redisKeyPrefix } = connection;
    const logger = options.logger ?? consoleLogger;
    this.warnings = new OnceLog(logger);
    const emitter = emitterOptions(options.emitter);
    const cache = cacheOptions(options.cache);
    // A sink passed in may serve several routers (one producer for many goals): it is
    // flushed on close, and closed by whoever made it.
    this.ownsSink = options.eventSink === undefined;
    this.sink =
      options.eventSink ??
      new KafkaEventSink({
        bootstrapServers: connection.bootstrapServers,
        topicPrefix: connection.topicPrefix,
        kafkaConfig: connection.kafkaConfig,
        options: emitter,
        logger,
      });
    // The process's shared feed of the connection's Redis, or a loop of its own over the
    // source given (or the source the function given makes).
    const given = options.snapshotSource;
    let driver: () => FeedDriver;
    if (given === undefined) {
      driver = () => sharedFeed(redisUrl, redisKeyPrefix);
    } else {
      const factory: () => SnapshotSource = typeof given === "function" ? given : () => given;
      driver = () => new SourceLoop(factory);
    }
    const local = this.params.localOutcomes ? new LocalEvidence(this.paths, this.params.minSamples) : null;
    this.cache = new PolicyCache(
      this.goal,
      this.paths,
      this.params,
      cache,
      stalenessMs,
      driver,
      logger,
      () => this.decisions,
      local,
    );
    this.index = new Map(this.paths.map((name, i) => [name, i]));
    this.encoder = new EventEncoder(this.goal, this.paths, this.service, SDK_VERSION);
    this.rng = new Rng(options.seed);
    this.ledger = new Ledger(() => this.sink, this.warnings, local === null ? null : this.learned);
    const host: CallHost = {
      paths: this.paths,
      decide: (among, forcePath, madeBy, retry) => this.decideAmong(among, null, forcePath, madeBy, retry ?? false),
      resume: (decision, argument) => this.resume(decision, argument),
      current: () => this.current.getStore()?.decision,
      judge: new Judge(options.successFn ?? null, successOnReturn, this.warnings),
      warnings: this.warnings,
    };
    this.callables = fns === null ? null : new CallablePaths(host, fns, maxAttempts);
    this.models = fns === null ? new ModelCalls(host, options.providers ?? {}, options.defaultProvider ?? null) : null;
  }

  /**
   * A router connected as the `OUTROUTE_*` variables say (`connectionFromEnv()`); a
   * `connection` given in the options wins over them field by field.
   */
  static fromEnv(options: RouterOptions, env: NodeJS.ProcessEnv = process.env): Router {
    return new this({ ...options, connection: connectionFromEnv(options.connection, env) });
  }

  // -- lifecycle ---------------------------------------------------------------------------

  /**
   * Attach to the policy feed (or start the loop of the router's own `snapshotSource`) and
   * wait (at most `waitMs`, default `cache.initWaitMs`) for a first snapshot. `decide()`
   * attaches by itself on first use, without waiting: until a snapshot is loaded it decides
   * `fallback` (the first path).
   */
  async start(waitMs?: number): Promise<this> {
    this.started = true;
    await this.cache.start(waitMs);
    return this;
  }

  /** Wait up to `timeoutMs` for queued events; resolve to how many are still pending. */
  flush(timeoutMs = 5000): Promise<number> {
    return this.sink.flush(timeoutMs);
  }

  /**
   * Flush (bounded), leave the policy feed (closed with its last router). Idempotent. Resolves to the number of events left
   * undelivered. An `eventSink` passed in is flushed, not closed: it may serve other routers.
   * Call it at shutdown: the Kafka connection keeps the process alive until then.
   */
  async close(timeoutMs = 5000): Promise<number> {
    if (this.closed) return 0;
    this.closed = true;
    const pending = this.ownsSink ? await this.sink.close(timeoutMs) : await this.sink.flush(timeoutMs);
    await this.cache.stop();
    if (pending > 0) this.warnings.logger.warn(`router ${this.goal} closed with ${pending} events undelivered`);
    return pending;
  }

  // -- deciding ------------------------------------------------------------------------------

  /**
   * Choose a path for one request. Synchronous, no I/O; never throws for a valid router.
   * Throws ArgumentError only for invalid arguments (an unknown `forcePath`, a context that
   * is not a flat object of at most 32 scalar labels).
   */
  decide(options: DecideOptions = {}): Decision {
    if (typeof options !== "object" || options === null) {
      throw new ArgumentError(`decide() options must be an object, got ${show(options)}`);
    }
    checkKeys("decide()", options, ["context", "forcePath", "among"]);
    const context = options.context === undefined ? null : checkContext(options.context);
    const among = options.among === undefined ? null : checkAmong(options.among, this.index, this.paths);
    return this.decideAmong(among, context, options.forcePath ?? null, "decide()", false);
  }

  private decideAmong(
    among: readonly number[] | null,
    context: Context | null,
    forcePath: string | null,
    madeBy: string,
    retry: boolean,
  ): Decision {
    if (!this.started) {
      this.started = true;
      void this.cache.start(0);
    }
    const policy = this.cache.current;
    const names = this.paths;
    const candidates = among === null ? names : among.map((j) => names[j]!);
    if (forcePath !== null && (typeof forcePath !== "string" || !candidates.includes(forcePath))) {
      const offered = among === null ? "paths" : "the paths offered (among)";
      throw new ArgumentError(`forcePath ${show(forcePath)} is not one of ${offered} ${candidates.join(", ")}`);
    }
    // Counted before choosing: this decision's number is the recovery probes' clock.
    this.decisions += 1;
    const serial = this.decisions;
    let path: string;
    let reason: Reason;
    if (forcePath !== null) {
      path = forcePath;
      reason = "forced";
    } else {
      let i: number;
      [i, reason] = policy.choose(among, this.rng, this.params, this.overridesIgnored, serial);
      path = candidates[i]!;
    }
    const traceId = this.idPrefix + serial.toString(16);
    const version = policy.version;
    const us = nowMicros();
    const decision = new Decision(this.ledger, traceId, path, reason, version, us, candidates, madeBy);
    const store = retry ? this.current.getStore() : undefined;
    if (store !== undefined) store.decision = decision;
    else this.current.enterWith({ decision });
    try {
      const payload = this.encoder.decision(
        traceId,
        path,
        reason,
        version,
        context,
        us,
        among === null ? null : EventEncoder.candidatesJson(candidates),
      );
      this.sink.send("decision", traceId, payload);
    } catch (error) {
      // never into the host: an emitter bug must not fail requests
      this.warnings.warn("send", `could not emit a decision event: ${String(error)}`);
    }
    return decision;
  }

  /**
   * Report the outcome of the decision made last in this async context (an AsyncLocalStorage
   * holds it: concurrent requests never see each other's). Throws NoCurrentDecision when there
   * is none; use `decision.report()` to report from elsewhere. Returns false for a decision
   * already reported.
   */
  report(success: boolean, fields: ReportFields = {}): boolean {
    const decision: Decision | undefined = this.current.getStore()?.decision;
    if (decision === undefined) {
      throw new NoCurrentDecision(
        `no decision of router ${this.goal} in this async context; call decide() first, or ` +
          "report on the Decision it returned",
      );
    }
    return decision.report(success, fields);
  }

  /**
   * Run `fn` in an async context of its own for this router: the decisions made in it are
   * what `router.report()` sees in it, and none of them is seen outside. Wrap a request
   * handler in it where requests share an async context (the requests of one keep-alive
   * connection do, in Node's HTTP server): a request that reports without deciding then finds
   * no decision instead of the one its connection made last.
   */
  scope<T>(fn: () => T): T {
    return this.current.run({}, fn);
  }

  /** An outcome this router reported: into its own view until the snapshot counts it. */
  private readonly learned = (path: string, outcome: Outcome, at: number): void => {
    const local = this.cache.local;
    if (local !== null && local.add(this.index.get(path)!, rewardOf(outcome.success, outcome.score), at)) {
      this.cache.localChanged();
    }
  };

  private readonly overridesIgnored = (): void =>
    this.warnings.warn(
      "overrides",
      `every path offered for goal ${this.goal} is disabled by an override; choosing among them as if none were`,
    );

  private resume(decision: Decision, argument: string): void {
    if (!(decision instanceof Decision) || decision.reporter !== this.ledger) {
      throw new ArgumentError(`${argument}: decision ${decision?.traceId} is not this router's`);
    }
    if (decision.reported) {
      throw new ArgumentError(
        `${argument}: decision ${decision.traceId} was already reported by ${decision.reportedBy}; ` +
          "a conversation is one decision, reported once at its end (a router with successFn " +
          "judges each answer: report conversations yourself instead)",
      );
    }
    this.current.enterWith({ decision });
  }

  // -- calling the paths for you -------------------------------------------------------------

  /**
   * Decide, call the chosen function with the arguments, and resolve to what it returns.
   *
   * A thrown error is reported as a failure and the next attempt picks among the paths not
   * tried yet (at most `maxAttempts` decisions). A returned value is judged by `successFn` (a
   * rejected one is a failure, and retried); without one it is returned and its decision waits
   * for your `router.report()` (or counts as a success with `successOnReturn: true`). If every
   * attempt failed, the last error is thrown, or the last result returned when the last
   * attempt did not throw. An AbortError is reported as `cancelled` and rethrown.
   */
  run(...args: unknown[]): Promise<unknown> {
    if (this.callables === null) {
      return Promise.reject(new ArgumentError("run() needs function paths; this router's paths are names"));
    }
    return this.callables.run(args);
  }

  /**
   * A chat completion from the chosen model, from an OpenAI-compatible endpoint.
   *
   * Provider failures (an HTTP error status, a timeout, a connection error, a body that is not
   * a chat completion) are reported as failures and thrown as ProviderError. An answer is
   * judged by `successFn`; without one its decision waits for your verdict. `continueFrom:` an
   * earlier completion makes this call a further turn of that decision (same trace, same
   * model, one report at the end); `forceModel` pins a model for a new decision (reason
   * `forced`). `stream: true` resolves to a CompletionStream of chunks. Other options go into
   * the request body (`max_tokens`, `temperature`, ...).
   */
  completion(messages: readonly ChatMessage[], options: StreamOptions): Promise<CompletionStream>;
  completion(messages: readonly ChatMessage[], options?: CompletionOptions): Promise<Completion>;
  completion(
    messages: readonly ChatMessage[],
    options: CompletionOptions | StreamOptions = {},
  ): Promise<Completion | CompletionStream> {
    if (this.models === null) {
      return Promise.reject(new ArgumentError("completion() needs model names as paths; this router has functions"));
    }
    return this.models.completion(messages, options);
  }

  // -- inspection ----------------------------------------------------------------------------

  /** The policy decisions are made with: per path posterior mean, n, status, last seen. */
  getPolicy(): PolicyView {
    if (!this.started) {
      this.started = true;
      void this.cache.start(0);
    }
    return this.cache.view();
  }

  stats(): RouterStats {
    const sink = this.sink.stats();
    const policy = this.cache.current;
    return {
      decisions: this.decisions,
      reports: this.ledger.reports,
      duplicateReports: this.ledger.duplicates,
      emitted: sink.emitted,
      delivered: sink.delivered,
      pending: sink.pending,
      dropped: sink.dropped,
      failed: sink.failed,
      policyLoaded: policy.loaded,
      policyVersion: policy.version,
      policyStale: this.cache.stale,
      policyErrors: this.cache.errors,
    };
  }

  toString(): string {
    return `Router(goal=${this.goal}, paths=${this.paths.join(",")})`;
  }
}
