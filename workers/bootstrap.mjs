// Worker threads do not inherit `--import tsx` on Node 20, so every TypeScript worker starts here:
// register tsx's loader for this thread, then import the real entry named in workerData.
import { register } from 'tsx/esm/api';
import { workerData } from 'node:worker_threads';

register();
await import(workerData.entry);
