// The path CPUs without FSGSBASE take, forced on this one (VCPUSIM_NATIVE_NO_FSGSBASE=1).
import { registerNativeRunnerTests } from './native-runner.cases.ts';

registerNativeRunnerTests(true);
