// Progressive enhancement of the upload page: drag-and-drop, instant previews, and submitting
// without a page reload. Without JavaScript the form posts to "/" and the server renders results.
(() => {
  const form = document.getElementById("upload-form");
  const input = document.getElementById("files");
  const zone = document.getElementById("dropzone");
  const selection = document.getElementById("selection");
  const button = document.getElementById("submit");

  function showSelection() {
    selection.replaceChildren();
    for (const file of input.files) {
      const img = document.createElement("img");
      img.src = URL.createObjectURL(file);
      img.alt = `Selected: ${file.name}`;
      img.onload = () => URL.revokeObjectURL(img.src);
      selection.append(img);
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

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
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
  });
})();
