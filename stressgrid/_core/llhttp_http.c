/* One of llhttp's C sources, compiled into the HTTP/1 core: Debian's node-llhttp
 * installs them in /usr/share/llhttp (on the include path setup.py gives), and no
 * Debian package builds llhttp as a library. Each source is its own translation
 * unit, as llhttp's build has it. */
#include "http.c"
