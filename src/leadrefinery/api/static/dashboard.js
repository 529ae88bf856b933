// Lead Refinery dashboard: render every .chart (a Vega-Lite spec in data-spec) with the
// vendored vega-embed bundle; submit filter selects marked data-autosubmit on change.
(function () {
  "use strict";
  function renderCharts() {
    if (typeof vegaEmbed !== "function") { return; }
    document.querySelectorAll(".chart[data-spec]").forEach(function (el) {
      var spec;
      try { spec = JSON.parse(el.getAttribute("data-spec")); } catch (e) { return; }
      vegaEmbed(el, spec, { actions: false, renderer: "svg", tooltip: { theme: "light" } })
        .then(function () { el.setAttribute("data-rendered", "1"); })
        .catch(function (err) {
          el.setAttribute("data-error", String(err));
          el.textContent = "Chart failed to render: " + err;
        });
    });
  }
  function autosubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
      s.addEventListener("change", function () { s.form.submit(); });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { renderCharts(); autosubmit(); });
})();
