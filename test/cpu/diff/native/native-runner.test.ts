import { registerNativeRunnerTests } from './native-runner.cases.ts';

registerNativeRunnerTests(false);
