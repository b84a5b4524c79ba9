// A module outside scenarios/ that imports the package by name, as a user's own scenario would.
import { defineScenario, NtGuest, RIG_ORACLES } from 'vcpusim';

export const selfReferenceWorks = typeof defineScenario === 'function' && typeof NtGuest === 'function' && 'run-completes' in RIG_ORACLES;
