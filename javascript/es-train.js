// Embed Studio, Train panel: inside the WebUI, show the running job in the WebUI's own progress bar
// (its progressbar.js polls ./internal/progress; the server side is embed_studio/webui/progress.py,
// which knows the job as "embed-studio-" + its id). Standalone there is no requestProgress: the
// panel's status line is the progress there.
(function () {
    "use strict";

    var following = null;
    var ended = {};

    function embedStudioFollowTrainJob() {
        if (typeof requestProgress !== "function") {
            return;
        }
        var root = embedStudioRoot();
        var marker = root.querySelector("#es-train-job [data-es-job]");
        if (!marker || marker.getAttribute("data-es-active") !== "1") {
            return;
        }
        var task = "embed-studio-" + marker.getAttribute("data-es-job");
        if (task === following || ended[task]) {
            return;
        }
        var anchor = root.querySelector("#es-train-progress .es-progress-anchor");
        if (!anchor) {
            return;
        }
        following = task;
        requestProgress(task, anchor, null, function () {
            ended[task] = true;
            if (following === task) {
                following = null;
            }
        });
    }

    if (typeof onAfterUiUpdate === "function") {
        onAfterUiUpdate(embedStudioFollowTrainJob);
    }
})();
