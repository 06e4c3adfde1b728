// A plain-text code editor: a textarea with a line-number gutter that scrolls with it,
// syntax colouring drawn underneath it, Python-friendly indentation, and one marked
// error line with its message.

import { element } from "./dom.js";

const INDENT = "    ";

/**
 * ``new CodeEditor(parent, {value, label, highlight, minLines, maxLines, onChange})``;
 * ``highlight(text)``: the text as coloured HTML (highlight.js), or none (plain).
 * ``editor.value``, ``editor.setError({line, column, message})``, ``editor.clearError()``.
 */
export class CodeEditor {
  constructor(parent, { value = "", label = "Code", highlight = null, minLines = 8, maxLines = 30,
    onChange = () => {}, className = "" } = {}) {
    this.highlighter = highlight;
    this.minLines = minLines;
    this.maxLines = maxLines;
    this.onChange = onChange;
    this.error = null;
    this.root = element("div", `editor ${className}`.trim());
    this.gutter = element("div", "editor-gutter");
    this.gutter.setAttribute("aria-hidden", "true");
    this.numbers = element("div", "editor-numbers");
    this.gutter.appendChild(this.numbers);
    this.body = element("div", "editor-body");
    this.mark = element("div", "editor-mark");
    this.mark.hidden = true;
    this.textarea = element("textarea");
    this.textarea.spellcheck = false;
    this.textarea.wrap = "off";
    this.textarea.setAttribute("autocapitalize", "off");
    this.textarea.setAttribute("autocomplete", "off");
    this.textarea.setAttribute("aria-label", label);
    this.textarea.value = value;
    this.code = element("pre", "editor-code");
    this.code.setAttribute("aria-hidden", "true");
    this.code.hidden = !this.highlighter;
    if (this.highlighter) this.textarea.classList.add("highlighted");
    this.body.append(this.mark, this.code, this.textarea);
    this.root.append(this.gutter, this.body);
    this.message = element("button", "editor-error");
    this.message.type = "button";
    this.message.hidden = true;
    this.message.title = "Go to the line";
    this.message.addEventListener("click", () => this.goTo(this.error));
    parent.append(this.root, this.message);

    this.textarea.addEventListener("input", () => {
      this.clearError();
      this.refresh();
      this.onChange(this.value);
    });
    this.textarea.addEventListener("scroll", () => this.sync());
    this.textarea.addEventListener("keydown", (event) => this.keydown(event));
    this.refresh();
  }

  get value() {
    return this.textarea.value;
  }

  set value(text) {
    this.textarea.value = text;
    this.clearError();
    this.refresh();
  }

  lineCount() {
    return this.textarea.value.split("\n").length;
  }

  refresh() {
    const count = this.lineCount();
    if (this.numbers.childElementCount !== count) {
      const fragment = document.createDocumentFragment();
      for (let i = 1; i <= count; i += 1) {
        const line = element("div", "", String(i));
        line.dataset.line = String(i);
        fragment.appendChild(line);
      }
      this.numbers.textContent = "";
      this.numbers.appendChild(fragment);
      this.gutter.style.width = `${Math.max(2, String(count).length) + 2}ch`;
    }
    if (this.highlighter) {
      // The trailing newline keeps a last empty line as tall as the textarea's.
      this.code.innerHTML = `${this.highlighter(this.textarea.value)}\n`;
    }
    const rows = Math.min(this.maxLines, Math.max(this.minLines, count + 1));
    this.root.style.setProperty("--rows", String(rows));
    this.markLine();
    this.sync();
  }

  sync() {
    this.numbers.style.transform = `translateY(${-this.textarea.scrollTop}px)`;
    this.mark.style.transform = `translateY(${-this.textarea.scrollTop}px)`;
    this.code.style.transform = `translate(${-this.textarea.scrollLeft}px, ${-this.textarea.scrollTop}px)`;
  }

  markLine() {
    for (const node of this.numbers.querySelectorAll(".error")) node.classList.remove("error");
    const line = this.error && this.error.line;
    if (!line) {
      this.mark.hidden = true;
      return;
    }
    const number = this.numbers.querySelector(`[data-line="${Math.min(line, this.lineCount())}"]`);
    if (number) number.classList.add("error");
    this.mark.style.setProperty("--line", String(Math.min(line, this.lineCount()) - 1));
    this.mark.hidden = false;
  }

  /** Show ``message`` at ``line`` (1-based; column optional), scrolled into view. */
  setError({ line = null, column = null, message }) {
    this.error = { line, column, message };
    this.root.classList.add("has-error");
    this.message.hidden = false;
    const where = line ? `Line ${line}${column ? `, column ${column}` : ""}: ` : "";
    this.message.textContent = where + message;
    this.markLine();
    if (line) this.reveal(line);
  }

  clearError() {
    if (!this.error) return;
    this.error = null;
    this.root.classList.remove("has-error");
    this.message.hidden = true;
    this.message.textContent = "";
    this.markLine();
  }

  lineHeight() {
    return parseFloat(getComputedStyle(this.textarea).lineHeight) || 20;
  }

  reveal(line) {
    const lh = this.lineHeight();
    const top = (line - 1) * lh;
    const area = this.textarea;
    if (top < area.scrollTop || top + lh > area.scrollTop + area.clientHeight) {
      area.scrollTop = Math.max(0, top - area.clientHeight / 3);
    }
    this.sync();
  }

  /** Put the cursor at a line and column. */
  goTo(position) {
    if (!position || !position.line) return;
    const lines = this.value.split("\n");
    let offset = 0;
    for (let i = 0; i < position.line - 1 && i < lines.length; i += 1) offset += lines[i].length + 1;
    offset += Math.max(0, (position.column || 1) - 1);
    this.textarea.focus();
    this.textarea.setSelectionRange(offset, offset);
    this.reveal(position.line);
  }

  focus() {
    this.textarea.focus();
  }

  insert(text) {
    // execCommand keeps the browser's undo history; setRangeText is the fallback.
    if (!document.execCommand || !document.execCommand("insertText", false, text)) {
      const area = this.textarea;
      area.setRangeText(text, area.selectionStart, area.selectionEnd, "end");
      area.dispatchEvent(new Event("input"));
    }
  }

  keydown(event) {
    const area = this.textarea;
    if (event.key === "Escape") {
      this.escaped = true; // the next Tab leaves the editor
      return;
    }
    if (event.key === "Tab" && !event.ctrlKey && !event.altKey && !event.metaKey) {
      if (this.escaped) {
        this.escaped = false;
        return;
      }
      event.preventDefault();
      const { selectionStart: start, selectionEnd: end, value } = area;
      const lineStart = value.lastIndexOf("\n", start - 1) + 1;
      if (!event.shiftKey && start === end) {
        this.insert(INDENT);
        return;
      }
      // Indent or dedent every selected line.
      const blockEnd = end > start && value[end - 1] === "\n" ? end - 1 : end;
      const lines = value.slice(lineStart, blockEnd).split("\n");
      const changed = lines.map((line) => {
        if (!event.shiftKey) return INDENT + line;
        const spaces = /^ {0,4}/.exec(line)[0].length;
        return line.slice(spaces);
      }).join("\n");
      area.setSelectionRange(lineStart, blockEnd);
      this.insert(changed);
      area.setSelectionRange(lineStart, lineStart + changed.length);
      return;
    }
    this.escaped = false;
    if (event.key === "Enter" && !event.ctrlKey && !event.metaKey && !event.altKey && !event.shiftKey) {
      const { selectionStart: start, value } = area;
      const lineStart = value.lastIndexOf("\n", start - 1) + 1;
      const line = value.slice(lineStart, start);
      let indent = /^[ \t]*/.exec(line)[0];
      if (/:\s*(#.*)?$/.test(line)) indent += INDENT;
      event.preventDefault();
      this.insert("\n" + indent);
    }
  }
}
