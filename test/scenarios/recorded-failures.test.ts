/**
 * Goal: every race of the catalogue stays fixed on the interleaving that once broke it. Each file
 * of test/traces is a bug row's first failure in the main campaign, shrunk (written by
 * `scenarios/campaign.ts --corpus test/traces`): without the fixes it was recorded with off it must still
 * break the invariant it names, and with every fix on nothing may break (a fixed run that breaks
 * writes its trace to traces/, to replay). A recording the code has drifted from but that still
 * fails is logged, not failed (`npx vcpusim check-traces test/traces --update` pins the new run). Method:
 * the staysFixed macro, one test per file, as a user's suite would use it.
 */
import test from 'ava';
import { fileURLToPath } from 'node:url';
import { SCENARIOS } from '../../scenarios/index.ts';
import { staysFixed } from '../../src/ava.ts';
import { traceFilesIn } from '../../src/index.ts';

for (const file of traceFilesIn(fileURLToPath(new URL('../traces', import.meta.url)))) {
  test(staysFixed, SCENARIOS, { trace: file });
}
