import { Worker, type ResourceLimits } from 'node:worker_threads';

/** URL of the plain-JS bootstrap that lets a worker run TypeScript (see bootstrap.mjs). */
export const WORKER_BOOTSTRAP = new URL('../../workers/bootstrap.mjs', import.meta.url);

/** What a TypeScript worker entry receives as `workerData`. */
export interface TsWorkerData<T> {
  /** file: URL of the entry module (used by the bootstrap). */
  readonly entry: string;
  /** The entry's own data. */
  readonly data: T;
}

/** Worker threads started by this process that have not exited yet. */
const live = new Set<Worker>();

/**
 * Starts a worker thread running the TypeScript module `entry`, with `data` available to it as
 * `workerData.data`. SharedArrayBuffers in `data` are shared, not copied.
 */
export function spawnTsWorker<T>(entry: URL, data: T, options: { name?: string; resourceLimits?: ResourceLimits } = {}): Worker {
  const workerData: TsWorkerData<T> = { entry: entry.href, data };
  const worker = new Worker(WORKER_BOOTSTRAP, { workerData, name: options.name, resourceLimits: options.resourceLimits });
  live.add(worker);
  worker.once('exit', () => live.delete(worker));
  return worker;
}

/** How many workers started here are still alive (tests assert none outlives its test). */
export function liveWorkers(): number {
  return live.size;
}
