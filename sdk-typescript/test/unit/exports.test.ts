/** The package's public surface is exactly these names; anything else is internal. */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import * as sdk from "../../src/index.js";
import * as testing from "../../src/testing.js";
import { PACKAGE } from "../support/helpers.js";

test("@outroute/sdk exports exactly its public names", () => {
  assert.deepEqual(Object.keys(sdk).sort(), [
    "ArgumentError",
    "Completion",
    "CompletionStream",
    "DEFAULT_CACHE",
    "DEFAULT_CONNECTION",
    "DEFAULT_EMITTER",
    "Decision",
    "FAILURE_CATEGORIES",
    "InvalidSnapshot",
    "KafkaEventSink",
    "NoCurrentDecision",
    "OutrouteError",
    "Provider",
    "ProviderError",
    "REASONS",
    "Router",
    "RouterError",
    "SDK_VERSION",
    "connectionFromEnv",
    "consoleLogger",
    "partitionOf",
    "silentLogger",
  ]);
  assert.deepEqual(Object.keys(testing).sort(), ["InMemorySink", "NullSink", "StaticSnapshotSource", "UnavailableSnapshotSource"]);
});

test("the reasons and failure categories are the exported schemas' own", () => {
  const dir = process.env.OUTROUTE_SCHEMAS_DIR ?? join(PACKAGE, "build", "schemas");
  const decision = JSON.parse(readFileSync(join(dir, "DecisionEvent.schema.json"), "utf8"));
  const outcome = JSON.parse(readFileSync(join(dir, "OutcomeEvent.schema.json"), "utf8"));
  assert.deepEqual([...sdk.REASONS].sort(), [...decision.properties.reason.enum].sort());
  const categories = outcome.properties.failure_category.anyOf.find((s: { enum?: string[] }) => s.enum).enum;
  assert.deepEqual([...sdk.FAILURE_CATEGORIES].sort(), [...categories].sort());
});
