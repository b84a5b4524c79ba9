#!/usr/bin/env node
// `npx vcpusim …` in this project: register tsx's loader (the code is TypeScript, run without a
// build step), then hand the arguments to the command dispatcher.
import { register } from 'tsx/esm/api';

register();
const { vcpusimMain } = await import('../src/cli/vcpusim.ts');
vcpusimMain();
