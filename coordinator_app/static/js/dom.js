// Building the page: the one DOM helper module every view uses.

const SVG = "http://www.w3.org/2000/svg";

/** A new ``tag`` element with ``className`` and text content (each optional). */
export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A new SVG element with ``attributes``, appended to ``parent`` when one is given. */
export function svgElement(name, attributes = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (parent) parent.appendChild(node);
  return node;
}
