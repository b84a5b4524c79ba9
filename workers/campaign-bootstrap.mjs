// Piscina loads its task module by file name in each pool thread; this plain-JS entry registers
// tsx in the thread (see bootstrap.mjs) and hands piscina the TypeScript task function.
import { register } from 'tsx/esm/api';

register();
const { runCampaignTask, runExhaustiveTask, runShrinkTask } = await import('./campaign.worker.ts');

export default runCampaignTask;
// A bounded search on a pool, a campaign row's shrink (piscina's `name` option picks them).
export { runExhaustiveTask, runShrinkTask };
