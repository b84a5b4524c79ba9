import { fileURLToPath } from 'node:url';
import { campaignCommand, runMain } from '../src/index.ts';

/** `npx tsx scenarios/campaign.ts [options]`: the main job, every scenario × all fixes on and each bug (--help). */
runMain((argv) => campaignCommand(argv, { builtIn: [fileURLToPath(new URL('./index.ts', import.meta.url))] }));
