import { fileURLToPath } from 'node:url';
import { runCommand, runMain } from '../src/index.ts';

/** `npx tsx scenarios/run.ts <scenario> [options]`: one scenario, many seeds, or a replay (--help). */
runMain((argv) => runCommand(argv, { builtIn: [fileURLToPath(new URL('./index.ts', import.meta.url))] }));
