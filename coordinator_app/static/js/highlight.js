// Syntax colouring for the code editor: Python scripts and JSON, as HTML spans.
// A small tokenizer, not a parser: it only has to colour what the eye looks for.

const PYTHON_KEYWORDS = new Set(("False None True and as assert async await break class continue def del " +
  "elif else except finally for from global if import in is lambda nonlocal not or pass raise return try " +
  "while with yield match case").split(" "));
const PYTHON_BUILTINS = new Set(("print len range int str bytes float bool dict list tuple set min max sum " +
  "abs any all enumerate zip sorted reversed isinstance repr round open iter next map filter " +
  "Exception ValueError TimeoutError ConnectionError AssertionError KeyError").split(" "));

const PYTHON_TOKEN = new RegExp([
  "(#[^\\n]*)", // 1 comment
  "((?:[rRbBuUfF]{1,2})?(?:\"\"\"[\\s\\S]*?(?:\"\"\"|$)|'''[\\s\\S]*?(?:'''|$)|\"(?:[^\"\\\\\\n]|\\\\.)*\"?|'(?:[^'\\\\\\n]|\\\\.)*'?))", // 2 string
  "(\\b(?:0[xXoObB][\\da-fA-F_]+|\\d[\\d_]*(?:\\.\\d*)?(?:[eE][+-]?\\d+)?j?)\\b)", // 3 number
  "(@[A-Za-z_][\\w.]*)", // 4 decorator
  "([A-Za-z_]\\w*)", // 5 name
].join("|"), "g");

const JSON_TOKEN = /("(?:[^"\\\n]|\\.)*"?)(\s*:)?|(-?\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b)|\b(true|false|null)\b/g;

export function escapeHtml(text) {
  return text.replace(/[&<>]/g, (c) => (c === "&" ? "&amp;" : c === "<" ? "&lt;" : "&gt;"));
}

function span(kind, text) {
  return `<span class="tok-${kind}">${escapeHtml(text)}</span>`;
}

/** Colour Python, with ``apiNames`` (a Set: the names a device script is given) marked as such. */
export function highlightPython(text, apiNames) {
  let html = "";
  let last = 0;
  PYTHON_TOKEN.lastIndex = 0;
  let match;
  while ((match = PYTHON_TOKEN.exec(text))) {
    if (match[0] === "") {
      PYTHON_TOKEN.lastIndex += 1;
      continue;
    }
    html += escapeHtml(text.slice(last, match.index));
    last = match.index + match[0].length;
    if (match[1]) html += span("comment", match[1]);
    else if (match[2]) html += span("string", match[2]);
    else if (match[3]) html += span("number", match[3]);
    else if (match[4]) html += span("decorator", match[4]);
    else {
      const name = match[5];
      const attribute = text[match.index - 1] === "."; // params.get is not the get() builtin
      if (PYTHON_KEYWORDS.has(name)) html += span("keyword", name);
      else if (attribute) html += escapeHtml(name);
      else if (apiNames.has(name)) html += span("api", name);
      else if (PYTHON_BUILTINS.has(name)) html += span("builtin", name);
      else html += escapeHtml(name);
    }
  }
  return html + escapeHtml(text.slice(last));
}

export function highlightJson(text) {
  let html = "";
  let last = 0;
  JSON_TOKEN.lastIndex = 0;
  let match;
  while ((match = JSON_TOKEN.exec(text))) {
    html += escapeHtml(text.slice(last, match.index));
    last = match.index + match[0].length;
    if (match[1]) html += span(match[2] ? "key" : "string", match[1]) + (match[2] ? escapeHtml(match[2]) : "");
    else if (match[3]) html += span("number", match[3]);
    else html += span("keyword", match[4]);
  }
  return html + escapeHtml(text.slice(last));
}

/** A highlighter of device scripts: ``apiNames`` as in highlightPython. */
export function pythonHighlighter(apiNames) {
  return (text) => highlightPython(text, apiNames);
}
