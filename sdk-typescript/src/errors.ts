/**
 * Exceptions of the SDK.
 *
 *     OutrouteError
 *      +-- ArgumentError        bad input to a public function: names the field and the rule
 *      +-- RouterError
 *           +-- NoCurrentDecision    router.report() with no decide() in this async context
 *           +-- ProviderError        a model provider call failed (carries the failure category)
 *
 * `decide()` never throws for a valid router: Kafka or Redis trouble degrades to counted drops
 * and a stale policy.
 */

import type { FailureCategory } from "./decision.js";

export class OutrouteError extends Error {
  override name = "OutrouteError";
}

/** Bad input to a public function; the message names the field and the rule. */
export class ArgumentError extends OutrouteError {
  override name = "ArgumentError";
}

/** Base class of the SDK's runtime errors. */
export class RouterError extends OutrouteError {
  override name = "RouterError";
}

/** `router.report()` was called where no `decide()` happened (this async context). */
export class NoCurrentDecision extends RouterError {
  override name = "NoCurrentDecision";
}

/** A model provider call failed. Reported to outroute as a failure before it is thrown. */
export class ProviderError extends RouterError {
  override name = "ProviderError";
  readonly model: string;
  readonly category: FailureCategory;
  readonly traceId: string;
  readonly statusCode: number | null;

  constructor(
    message: string,
    details: {
      model: string;
      category: FailureCategory;
      traceId: string;
      statusCode?: number | null;
      cause?: unknown;
    },
  ) {
    const status = details.statusCode != null ? `, HTTP ${details.statusCode}` : "";
    super(
      `${message} (model ${details.model}, ${details.category}${status}, trace ${details.traceId})`,
      details.cause === undefined ? undefined : { cause: details.cause },
    );
    this.model = details.model;
    this.category = details.category;
    this.traceId = details.traceId;
    this.statusCode = details.statusCode ?? null;
  }
}
