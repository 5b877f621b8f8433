// Embed Studio, Dataset panel: never lose unsaved caption edits to a reload, a closed tab or a re-open.
// The server renders <div data-es-dirty="1|0"> inside #es-dataset-dirty after every edit and save.
(function () {
    "use strict";

    function embedStudioDatasetDirty() {
        var marker = embedStudioRoot().querySelector("#es-dataset-dirty [data-es-dirty]");
        return !!marker && marker.getAttribute("data-es-dirty") === "1";
    }

    function embedStudioUnsavedCount() {
        var marker = embedStudioRoot().querySelector("#es-dataset-dirty [data-es-dirty]");
        return marker ? parseInt(marker.getAttribute("data-es-unsaved") || "0", 10) : 0;
    }

    // Called (through the buttons' _js) with the handler's input values; the last one is the
    // "discard unsaved changes" flag the server checks before replacing the open dataset.
    function embedStudioConfirmDiscard(args) {
        var out = Array.prototype.slice.call(args);
        if (!out.length) return out;
        if (!embedStudioDatasetDirty()) return out;
        var n = embedStudioUnsavedCount();
        out[out.length - 1] = window.confirm(
            n + " caption change(s) are not saved. Discard them? (Cancel keeps them; then use Save.)"
        );
        return out;
    }

    // Ctrl+Z / Ctrl+Shift+Z / Ctrl+Y undo and redo dataset edits while the panel is visible,
    // unless the focus is in a text field (where they keep their usual meaning).
    function embedStudioDatasetKeys(event) {
        if (!(event.ctrlKey || event.metaKey) || event.altKey) return;
        var target = event.composedPath ? event.composedPath()[0] : event.target;
        var tag = target && target.tagName ? target.tagName.toLowerCase() : "";
        if (tag === "input" || tag === "textarea" || (target && target.isContentEditable)) return;
        var key = (event.key || "").toLowerCase();
        var id = key === "z" ? (event.shiftKey ? "es-dataset-redo" : "es-dataset-undo") : key === "y" ? "es-dataset-redo" : null;
        if (!id) return;
        var button = embedStudioRoot().querySelector("#" + id);
        if (!button || button.offsetParent === null) return; // the panel is not on screen
        event.preventDefault();
        button.click();
    }

    window.embedStudioDatasetDirty = embedStudioDatasetDirty;
    document.addEventListener("keydown", embedStudioDatasetKeys);
    window.embedStudioConfirmDiscard = embedStudioConfirmDiscard;

    window.addEventListener("beforeunload", function (event) {
        if (!embedStudioDatasetDirty()) return undefined;
        event.preventDefault();
        event.returnValue = "Unsaved caption changes will be lost.";
        return event.returnValue;
    });
})();
