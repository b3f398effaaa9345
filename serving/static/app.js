// Progressive enhancement of the upload page: drag-and-drop, instant previews (or a clear message for a
// file that is not an image), submitting without a page reload, and the heatmap toggle acting at once.
// Without JavaScript the form posts to "/" and the server renders results (heatmaps when the box is ticked).
(() => {
  const form = document.getElementById("upload-form");
  const input = document.getElementById("files");
  const zone = document.getElementById("dropzone");
  const selection = document.getElementById("selection");
  const button = document.getElementById("submit");
  const explain = document.getElementById("explain"); // absent when the backend cannot draw heatmaps

  function message(file, text, className) {
    const note = document.createElement("p");
    note.className = className;
    note.setAttribute("role", "alert");
    note.textContent = `${file.name}: ${text}`;
    return note;
  }

  function preview(file) {
    if (file.type && !file.type.startsWith("image/")) {
      return message(file, `not an image (${file.type}); it will be refused.`, "not-image");
    }
    const img = document.createElement("img");
    img.src = URL.createObjectURL(file);
    img.alt = `Selected: ${file.name}`;
    img.onload = () => URL.revokeObjectURL(img.src);
    img.onerror = () => {
      URL.revokeObjectURL(img.src);
      // TIFF is checked by the server but not shown by most browsers: no preview is not an error there
      img.replaceWith(
        file.type === "image/tiff"
          ? message(file, "no preview in this browser; it will still be checked.", "not-image no-preview")
          : message(file, "this file cannot be read as an image (not an image, or damaged).", "not-image"),
      );
    };
    return img;
  }

  function showSelection() {
    selection.replaceChildren(...Array.from(input.files, preview));
  }

  function showHeatmaps() {
    document.body.classList.toggle("hide-heatmaps", !explain.checked);
  }

  async function submit() {
    if (!input.files.length) return;
    button.disabled = true;
    button.textContent = "Checking…";
    try {
      const response = await fetch(form.action, { method: "POST", body: new FormData(form) });
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      document.getElementById("results").replaceWith(page.getElementById("results"));
    } catch (error) {
      document.getElementById("results").innerHTML =
        '<p class="problem" role="alert">The server could not be reached. Try again.</p>';
    } finally {
      button.disabled = false;
      button.textContent = "Check images";
    }
  }

  input.addEventListener("change", showSelection);
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    input.files = event.dataTransfer.files;
    showSelection();
  });

  if (explain) {
    explain.addEventListener("change", () => {
      showHeatmaps();
      // results shown without heatmaps: ask again for the same files, this time with them
      const answered = document.querySelectorAll("#results li.result:not(.refused)").length;
      if (explain.checked && answered && !document.querySelector("#results .heatmap") && !button.disabled) {
        submit();
      }
    });
    showHeatmaps();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
})();
