// Loading the vendored third-party libraries (ui/vendor/, see VERSIONS.md) on demand:
// only the pages that draw graphs or charts pay for them, each file is fetched once.

import { base } from '../api.js';

/** The URL of a file under ui/vendor/. */
export function vendorUrl(path) {
  return `${base}/static/vendor/${path}`;
}

const scripts = new Map();
const styles = new Map();
const modules = new Map();

/** Adds a classic <script> once; resolves when it has run. */
export function loadScript(src) {
  if (!scripts.has(src)) {
    scripts.set(
      src,
      new Promise((resolve, reject) => {
        const el = document.createElement('script');
        el.src = src;
        el.async = true;
        el.onload = () => resolve();
        el.onerror = () => {
          scripts.delete(src);
          el.remove();
          reject(new Error(`could not load ${src}`));
        };
        document.head.appendChild(el);
      }),
    );
  }
  return scripts.get(src);
}

/** Adds a stylesheet <link> once; resolves when it has loaded (or failed: styling only). */
export function loadStyle(href) {
  if (!styles.has(href)) {
    styles.set(
      href,
      new Promise((resolve) => {
        const el = document.createElement('link');
        el.rel = 'stylesheet';
        el.href = href;
        el.onload = () => resolve();
        el.onerror = () => resolve();
        // Before pages.css, so page rules can override the library's.
        const first = document.head.querySelector('link[rel="stylesheet"]');
        document.head.insertBefore(el, first);
      }),
    );
  }
  return styles.get(href);
}

/** import() of an ES module under ui/vendor/, once; its default export. */
export function importVendor(path) {
  if (!modules.has(path)) {
    const promise = import(vendorUrl(path))
      .then((module) => module.default ?? module)
      .catch((error) => {
        modules.delete(path);
        throw new Error(`could not load ${path}: ${error.message}`);
      });
    modules.set(path, promise);
  }
  return modules.get(path);
}

let cytoscapePromise = null;

/** cytoscape with the dagre layout registered. */
export function loadCytoscape() {
  if (!cytoscapePromise) {
    cytoscapePromise = Promise.all([importVendor('cytoscape/cytoscape.esm.min.js'), importVendor('cytoscape-dagre/cytoscape-dagre.min.js')])
      .then(([cytoscape, dagre]) => {
        cytoscape.use(dagre);
        return cytoscape;
      })
      .catch((error) => {
        cytoscapePromise = null;
        throw error;
      });
  }
  return cytoscapePromise;
}

/** uPlot and its stylesheet. */
export async function loadUPlot() {
  const [uPlot] = await Promise.all([importVendor('uplot/uPlot.esm.js'), loadStyle(vendorUrl('uplot/uPlot.min.css'))]);
  return uPlot;
}
