// Shows every <time data-local datetime="..."> in the viewer's own time zone.
"use strict";
(function () {
  const format = new Intl.DateTimeFormat(undefined, {
    dateStyle: "medium",
    timeStyle: "short",
  });
  function localize(root) {
    for (const element of (root || document).querySelectorAll("time[data-local]")) {
      const value = element.getAttribute("datetime");
      if (!value) continue;
      const date = new Date(value);
      if (Number.isNaN(date.getTime())) continue;
      element.textContent = format.format(date);
      element.title = date.toString();
    }
  }
  window.localTime = localize;
  document.addEventListener("DOMContentLoaded", () => localize(document));
})();
