// Embed Studio: what every panel's script shares. Loaded first (the WebUI and the standalone app
// load javascript/*.js in name order); the others call it only from events, after the page loads.

// The element tree to search: the WebUI's gradioApp() (which may be a shadow root), else the document.
function embedStudioRoot() {
    if (typeof gradioApp === "function") {
        try {
            return gradioApp() || document;
        } catch (e) {
            return document;
        }
    }
    return document;
}
