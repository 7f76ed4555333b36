// The dashboard's component library, in one place: Preact, its hooks, htm and Preact Signals,
// vendored at pinned versions by `cargo xtask vendor-web` (see `vendor/`). Pages import from
// here, never from `vendor/` directly.
//
// `html` is htm bound to Preact's `h`: tagged templates instead of JSX, so there is no build
// step. htm parses the template strings itself (it never evaluates strings as code), which the
// strict Content-Security-Policy requires.

import { h, render, Fragment, createContext } from './vendor/preact.mjs';
import htm from './vendor/htm.module.js';

export { h, render, Fragment, createContext };
export {
  useState, useEffect, useLayoutEffect, useRef, useMemo, useCallback, useContext, useId,
} from './vendor/hooks.mjs';
export {
  signal, computed, effect, batch, untracked, useSignal, useComputed, useSignalEffect,
} from './vendor/signals.module.js';

export const html = htm.bind(h);
