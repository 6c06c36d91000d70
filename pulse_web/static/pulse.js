// The dashboard's only script of its own (htmx does the polling).
// - A form with data-confirm asks before it is sent.
// - When the dashboard itself stops answering a poll, a notice says so
//   until a poll gets an answer again.
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  document.addEventListener("htmx:sendError", function () {
    document.body.classList.add("offline");
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.xhr && event.detail.xhr.status) {
      document.body.classList.remove("offline");
    }
  });
})();
