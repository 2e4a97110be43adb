// Init scripts of the browser test (ui.test.mjs): functions Playwright serialises into
// every page before its own scripts run, so they may use nothing outside themselves.

/**
 * Marks in the page (an init script): the moment, on performance.now()'s clock (0 =
 * navigation start), when the search results first show and when #trace-view first
 * turns data-ready="true", per trace id. A MutationObserver sees it in the same task.
 */
export function installMarks() {
  window.__meshtelMarks = {};
  const check = () => {
    const marks = window.__meshtelMarks;
    if (!('search' in marks) && document.querySelector('.search-result') && document.querySelector('#search-count')) {
      marks.search = performance.now();
    }
    const view = document.querySelector('#trace-view[data-ready="true"]');
    if (view) {
      const key = `trace:${view.getAttribute('data-trace-id')}`;
      if (!(key in marks)) marks[key] = performance.now();
    }
  };
  new MutationObserver(check).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-ready', 'class', 'data-trace-id'] });
}

/** An init script: a Content-Security-Policy violation is a console error, so a step fails on it. */
export function reportCspViolations() {
  document.addEventListener('securitypolicyviolation', (e) => console.error(`Content Security Policy violation: ${e.effectiveDirective} blocked ${e.blockedURI || 'inline'} (${e.sourceFile}:${e.lineNumber})`));
}
