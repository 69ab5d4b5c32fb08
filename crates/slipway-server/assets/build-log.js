/*
 * Slipway live build log.
 *
 * Plain ES2017 without dependencies or a build step, served from the binary at
 * /assets/build-log.js. It uses no eval, no inline handlers and no inline styles of its own, so
 * it works under a strict Content-Security-Policy (script-src 'self').
 *
 * The page provides:
 *   <pre id="log" data-build-id="…" data-offset="N"
 *        data-stream-url="/api/builds/{id}/log/stream">…server-rendered blocks…</pre>
 *   <input type="checkbox" id="follow-tail">   (optional: follow the end of the log)
 *   <span id="build-status" class="status status-running">running</span>   (optional)
 *
 * It opens EventSource(streamUrl + "?offset=" + N) and handles the stream's events:
 *   log    {"offset": <start byte>, "text": "…"}  text to append (may hold ANSI escapes)
 *   status {"status": "running", …}              the build's status changed
 *   end    {"status": "succeeded"}               the log is complete; the stream closes
 * Reconnecting is EventSource's own; the server resumes from Last-Event-ID (the byte offset
 * after the last text received), and any text that still arrives twice is skipped here by its
 * offset.
 *
 * Text is turned into HTML by the same rules as the server's web/ansi.rs (same class names, same
 * truecolour-to-xterm-256 mapping, same treatment of carriage returns, backspaces and escape
 * sequences; every colour is a class, never a style), with everything escaped, and
 * is appended in blocks of 500 lines so that the browser never lays out the whole log again.
 * Incoming text is batched and drawn at most once per animation frame.
 *
 * When the stream ends, #log gets data-state="ended" (tests wait for that); while it runs the
 * attribute reads "connecting", "streaming", "reconnecting" or "error". A page for a build that
 * has already finished may render data-state="ended" itself, and then no stream is opened.
 */
(function () {
  'use strict';

  /** Lines per block element; web/ansi.rs's LOG_BLOCK_LINES is the same. */
  const BLOCK_LINES = 500;
  /** At most this many lines are drawn in one frame, so a huge backlog cannot freeze the page. */
  const MAX_LINES_PER_FRAME = 5000;
  /** An unfinished line longer than this is cut at its last carriage return (see flush). */
  const COMPACT_PARTIAL_AT = 2048;
  /** A scroll upwards this soon after the reader touched a control counts as theirs. */
  const USER_INPUT_WINDOW_MS = 1000;

  /** The statuses a build never leaves (BuildStatus::is_finished on the server). */
  const FINISHED_STATUSES = ['succeeded', 'failed', 'cancelled', 'skipped'];
  const ATTRIBUTE_CLASSES = ['ansi-bold', 'ansi-dim', 'ansi-italic', 'ansi-underline'];
  const BOLD = 0;
  const DIM = 1;
  const ITALIC = 2;
  const UNDERLINE = 3;

  const HTML_ESCAPES = {
    '&': '&amp;',
    '<': '&lt;',
    '>': '&gt;',
    '"': '&quot;',
    "'": '&#39;',
  };

  function escapeHtml(text) {
    return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
  }

  /** Parses an SGR parameter: empty is 0, and huge values saturate instead of wrapping. */
  function parseNumber(text) {
    let value = 0;
    for (let i = 0; i < text.length; i++) {
      const digit = text.charCodeAt(i) - 48;
      if (digit >= 0 && digit <= 9) {
        value = Math.min(value * 10 + digit, 4294967295);
      }
    }
    return value;
  }

  /** The channel values of xterm's 6×6×6 colour cube (indexes 16–231). */
  const CUBE_LEVELS = [0, 95, 135, 175, 215, 255];

  /**
   * The xterm index (16–255) nearest to a truecolour, exactly as web/ansi.rs's
   * nearest_xterm_index (tmux's choice): the nearest cube colour or the grey of the channels'
   * mean, whichever is closer by squared RGB distance (the cube on a tie).
   */
  function nearestXtermIndex(r, g, b) {
    const step = (v) => (v < 48 ? 0 : v < 115 ? 1 : Math.floor((v - 35) / 40));
    const qr = step(r);
    const qg = step(g);
    const qb = step(b);
    const cube = [CUBE_LEVELS[qr], CUBE_LEVELS[qg], CUBE_LEVELS[qb]];
    const cubeIndex = 16 + 36 * qr + 6 * qg + qb;
    if (cube[0] === r && cube[1] === g && cube[2] === b) {
      return cubeIndex;
    }
    const mean = Math.floor((r + g + b) / 3);
    const greyStep = mean > 238 ? 23 : Math.floor(Math.max(mean - 3, 0) / 10);
    const grey = 8 + 10 * greyStep;
    const distance = (x, y, z) => (x - r) * (x - r) + (y - g) * (y - g) + (z - b) * (z - b);
    return distance(grey, grey, grey) < distance(cube[0], cube[1], cube[2]) ? 232 + greyStep : cubeIndex;
  }

  /** A colour from exactly three components of at most 255 each, as its nearest index. */
  function rgbColour(values) {
    if (values.length !== 3 || values.some((v) => v > 255)) {
      return null;
    }
    return nearestXtermIndex(values[0], values[1], values[2]);
  }

  /** One of xterm's 256 colours by index; anything above 255 is no colour. */
  function colour256(index) {
    return index > 255 ? null : index;
  }

  /**
   * The text style that SGR sequences build up. A colour is null (the default) or an xterm
   * index 0–255, drawn with the class ansi-fg-N or ansi-bg-N: never with an inline style, which
   * the page's Content-Security-Policy would block.
   */
  class AnsiState {
    constructor() {
      this.reset();
    }

    reset() {
      this.attributes = [false, false, false, false];
      this.fg = null;
      this.bg = null;
      this.tag = '';
    }

    clone() {
      const copy = new AnsiState();
      copy.attributes = this.attributes.slice();
      copy.fg = this.fg;
      copy.bg = this.bg;
      copy.tag = this.tag;
      return copy;
    }

    /** Applies the parameters of one SGR sequence; unknown codes are ignored. */
    applySgr(params) {
      const groups = params.split(';');
      for (let index = 0; index < groups.length; index++) {
        const group = groups[index];
        const parts = group.split(':');
        const code = parseNumber(parts[0]);
        if (code === 0) {
          this.reset();
        } else if (code === 1) {
          this.attributes[BOLD] = true;
        } else if (code === 2) {
          this.attributes[DIM] = true;
        } else if (code === 3) {
          this.attributes[ITALIC] = true;
        } else if (code === 4) {
          // "4:0" is "no underline" in the colon form; other kinds are drawn as underline.
          this.attributes[UNDERLINE] = parts.length < 2 || parseNumber(parts[1]) !== 0;
        } else if (code === 22) {
          this.attributes[BOLD] = false;
          this.attributes[DIM] = false;
        } else if (code === 23) {
          this.attributes[ITALIC] = false;
        } else if (code === 24) {
          this.attributes[UNDERLINE] = false;
        } else if (code >= 30 && code <= 37) {
          this.fg = code - 30;
        } else if (code >= 90 && code <= 97) {
          this.fg = code - 90 + 8;
        } else if (code === 39) {
          this.fg = null;
        } else if (code >= 40 && code <= 47) {
          this.bg = code - 40;
        } else if (code >= 100 && code <= 107) {
          this.bg = code - 100 + 8;
        } else if (code === 49) {
          this.bg = null;
        } else if (code === 38 || code === 48) {
          let colour = null;
          if (parts.length > 1) {
            colour = extendedFromSubparameters(parts.slice(1).map(parseNumber));
          } else {
            const found = extendedFromGroups(groups.slice(index + 1));
            colour = found.colour;
            index += found.used;
          }
          if (colour !== null) {
            if (code === 38) {
              this.fg = colour;
            } else {
              this.bg = colour;
            }
          }
        }
      }
      this.tag = this.openTag();
    }

    /** The opening <span> for this style, or '' when the style is plain. */
    openTag() {
      const classes = [];
      if (this.fg !== null) {
        classes.push('ansi-fg-' + this.fg);
      }
      if (this.bg !== null) {
        classes.push('ansi-bg-' + this.bg);
      }
      this.attributes.forEach((on, i) => {
        if (on) {
          classes.push(ATTRIBUTE_CLASSES[i]);
        }
      });
      return classes.length === 0 ? '' : '<span class="' + classes.join(' ') + '">';
    }
  }

  /** Reads "5;n" or "2;r;g;b" after a 38 or 48; answers the colour and the groups used. */
  function extendedFromGroups(rest) {
    if (rest.length === 0) {
      return { colour: null, used: 0 };
    }
    const mode = parseNumber(rest[0]);
    if (mode === 5) {
      const values = rest.slice(1, 2).map(parseNumber);
      return { colour: values.length === 1 ? colour256(values[0]) : null, used: 1 + values.length };
    }
    if (mode === 2) {
      const values = rest.slice(1, 4).map(parseNumber);
      return { colour: rgbColour(values), used: 1 + values.length };
    }
    return { colour: null, used: 1 };
  }

  /** Reads the colon forms "5:n", "2:r:g:b" and ITU T.416's "2:colourspace:r:g:b". */
  function extendedFromSubparameters(values) {
    if (values[0] === 5 && values.length >= 2) {
      return colour256(values[1]);
    }
    if (values[0] === 2) {
      const rest = values.slice(1);
      return rgbColour(rest.length >= 4 ? rest.slice(1, 4) : rest);
    }
    return null;
  }

  function isControl(code) {
    return (code < 0x20 && code !== 0x09) || (code >= 0x7f && code <= 0x9f);
  }

  /** Skips a control string (OSC, DCS, …) up to BEL, ESC \ or U+009C, or the line's end. */
  function skipControlString(line, i) {
    while (i < line.length) {
      const code = line.charCodeAt(i);
      if (code === 0x07 || code === 0x9c) {
        return i + 1;
      }
      if (code === 0x1b) {
        return line.charCodeAt(i + 1) === 0x5c ? i + 2 : i + 1;
      }
      i++;
    }
    return i;
  }

  /**
   * Reads a control sequence after its introducer and applies it when it is SGR. A character
   * that cannot belong to the sequence ends it unread, so broken input loses only the sequence.
   */
  function controlSequence(line, i, state) {
    const start = i;
    while (i < line.length && line.charCodeAt(i) >= 0x30 && line.charCodeAt(i) <= 0x3f) {
      i++;
    }
    const params = line.slice(start, i);
    let intermediates = false;
    while (i < line.length && line.charCodeAt(i) >= 0x20 && line.charCodeAt(i) <= 0x2f) {
      i++;
      intermediates = true;
    }
    const final = line.charCodeAt(i);
    if (final >= 0x40 && final <= 0x7e) {
      if (final === 0x6d && !intermediates && /^[0-9;:]*$/.test(params)) {
        state.applySgr(params);
      }
      return i + 1;
    }
    return i;
  }

  /** Reads what follows an ESC at `i`; answers where ordinary text resumes. */
  function escapeSequence(line, i, state) {
    if (i >= line.length) {
      return i;
    }
    const code = line.charCodeAt(i);
    if (code === 0x5b) {
      return controlSequence(line, i + 1, state);
    }
    // ']' OSC, 'P' DCS, 'X' SOS, '^' PM, '_' APC.
    if (code === 0x5d || code === 0x50 || code === 0x58 || code === 0x5e || code === 0x5f) {
      return skipControlString(line, i + 1);
    }
    if (code >= 0x20 && code <= 0x2f) {
      while (i < line.length && line.charCodeAt(i) >= 0x20 && line.charCodeAt(i) <= 0x2f) {
        i++;
      }
      const final = line.charCodeAt(i);
      return final >= 0x30 && final <= 0x7e ? i + 1 : i;
    }
    if (code >= 0x30 && code <= 0x7e) {
      return i + 1;
    }
    return i;
  }

  /**
   * Renders one line (without its line break) as escaped HTML, updating `state` with the line's
   * SGR sequences so that styles carry into the next line. Spans are closed within the line.
   *
   * When `info` is given, `info.clearedAt` is set to the index just after the last carriage
   * return that text followed: nothing before it is visible, so the line may be cut there once
   * `state` has taken in the part before it.
   */
  function renderLine(line, state, info) {
    let runs = [];
    let pendingReturn = false;
    let returnAt = -1;
    const pushText = (text) => {
      if (pendingReturn) {
        runs = [];
        pendingReturn = false;
        if (info) {
          info.clearedAt = returnAt;
        }
      }
      const last = runs[runs.length - 1];
      if (last && last.tag === state.tag) {
        last.text += text;
      } else {
        runs.push({ tag: state.tag, text: text });
      }
    };
    const backspace = () => {
      if (pendingReturn || runs.length === 0) {
        return;
      }
      const last = runs[runs.length - 1];
      // Remove one character, which is two UTF-16 units when it is a surrogate pair.
      const n = last.text.length;
      const low = last.text.charCodeAt(n - 1);
      const high = last.text.charCodeAt(n - 2);
      const pair = n >= 2 && low >= 0xdc00 && low <= 0xdfff && high >= 0xd800 && high <= 0xdbff;
      last.text = last.text.slice(0, pair ? n - 2 : n - 1);
      if (last.text === '') {
        runs.pop();
      }
    };

    let i = 0;
    while (i < line.length) {
      const code = line.charCodeAt(i);
      if (!isControl(code)) {
        let j = i + 1;
        while (j < line.length && !isControl(line.charCodeAt(j))) {
          j++;
        }
        pushText(line.slice(i, j));
        i = j;
        continue;
      }
      i++;
      if (code === 0x0d) {
        // The next text starts the line over; a return at the line's end changes nothing.
        pendingReturn = true;
        returnAt = i;
      } else if (code === 0x08) {
        backspace();
      } else if (code === 0x1b) {
        i = escapeSequence(line, i, state);
      } else if (code === 0x9b) {
        i = controlSequence(line, i, state);
      } else if (code === 0x90 || code === 0x98 || code === 0x9d || code === 0x9e || code === 0x9f) {
        i = skipControlString(line, i);
      }
      // Every other control has no visible form and is dropped.
    }

    let html = '';
    for (const run of runs) {
      html += run.tag === '' ? escapeHtml(run.text) : run.tag + escapeHtml(run.text) + '</span>';
    }
    return html;
  }

  /** Converts terminal text (any number of lines) to HTML, as web/ansi.rs's ansi_to_html. */
  function ansiToHtml(text) {
    const state = new AnsiState();
    return text
      .split('\n')
      .map((line) => renderLine(line, state))
      .join('\n');
  }

  /** The number of bytes `text` takes in UTF-8, which is what stream offsets count. */
  function utf8Length(text) {
    let bytes = 0;
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code < 0x80) {
        bytes += 1;
      } else if (code < 0x800) {
        bytes += 2;
      } else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
        bytes += 4;
        i++;
      } else {
        bytes += 3;
      }
    }
    return bytes;
  }

  /** `text` without its first `skip` UTF-8 bytes (rounded up to a whole character). */
  function utf8Skip(text, skip) {
    let bytes = 0;
    let i = 0;
    while (i < text.length && bytes < skip) {
      const code = text.charCodeAt(i);
      const pair = code >= 0xd800 && code <= 0xdbff && i + 1 < text.length;
      bytes += code < 0x80 ? 1 : code < 0x800 ? 2 : pair ? 4 : 3;
      i += pair ? 2 : 1;
    }
    return text.slice(i);
  }

  function parseJson(text) {
    try {
      const value = JSON.parse(text);
      return value !== null && typeof value === 'object' ? value : null;
    } catch (_) {
      return null;
    }
  }

  /** Starts the live log on the current page, if it has one. */
  function start() {
    const log = document.getElementById('log');
    if (!log || log.dataset.state === 'ended' || typeof EventSource !== 'function') {
      return;
    }
    const streamUrl = log.dataset.streamUrl;
    if (!streamUrl) {
      return;
    }
    const follow = document.getElementById('follow-tail');
    const statusElement = document.getElementById('build-status');

    const parsedOffset = Number.parseInt(log.dataset.offset || '0', 10);
    // The byte offset of the next text expected from the stream.
    let expectedOffset = Number.isSafeInteger(parsedOffset) && parsedOffset > 0 ? parsedOffset : 0;

    // The style in force at the start of the line being received.
    const state = new AnsiState();
    // Received lines not yet drawn; a head index avoids the cost of Array.shift on long queues.
    let queue = [];
    let queueHead = 0;
    // The line received so far without its line break; it is drawn in `tail` until it ends.
    let partial = '';
    let drawnPartial = '';
    let block = null;
    let blockLines = 0;
    let frame = 0;
    let ended = false;

    const tail = document.createElement('span');
    tail.className = 'log-tail';
    log.appendChild(tail);

    // The log scrolls with the page unless the page's stylesheet made #log a scroll box.
    const overflowY = window.getComputedStyle(log).overflowY;
    const scrollsItself = overflowY === 'auto' || overflowY === 'scroll';
    const scrollTop = () =>
      scrollsItself ? log.scrollTop : window.pageYOffset || document.documentElement.scrollTop;
    const scrollToBottom = () => {
      if (scrollsItself) {
        log.scrollTop = log.scrollHeight;
      } else {
        window.scrollTo(0, document.documentElement.scrollHeight);
      }
    };

    function setState(value) {
      if (!ended) {
        log.dataset.state = value;
      }
    }

    function updateStatus(status) {
      // Only a plain word becomes a class name, whatever the server sent.
      if (!statusElement || typeof status !== 'string' || !/^[a-z][a-z_-]{0,31}$/.test(status)) {
        return;
      }
      statusElement.textContent = status;
      for (const name of Array.from(statusElement.classList)) {
        if (name.startsWith('status-')) {
          statusElement.classList.remove(name);
        }
      }
      statusElement.classList.add('status-' + status);
      // Controls that fit only a running or only a finished build (cancel, retry) are both on
      // the page; the one that fits the new status is shown, the other hidden.
      const finished = FINISHED_STATUSES.indexOf(status) >= 0;
      for (const element of Array.from(document.querySelectorAll('[data-show-when]'))) {
        element.hidden = (element.dataset.showWhen === 'finished') !== finished;
      }
    }

    /** Draws queued lines (all of them, or one frame's worth) and the unfinished line. */
    function flush(all) {
      frame = 0;
      let budget = all ? Infinity : MAX_LINES_PER_FRAME;
      while (queueHead < queue.length && budget > 0) {
        if (block === null || blockLines >= BLOCK_LINES) {
          block = document.createElement('span');
          block.className = 'log-block';
          log.insertBefore(block, tail);
          blockLines = 0;
        }
        // One insertion per block per frame: the lines are joined first, then parsed once.
        const count = Math.min(BLOCK_LINES - blockLines, queue.length - queueHead, budget);
        let html = '';
        for (let k = 0; k < count; k++) {
          html += renderLine(queue[queueHead], state) + '\n';
          queueHead++;
        }
        // The HTML comes from renderLine, which escapes all text it was given.
        block.insertAdjacentHTML('beforeend', html);
        blockLines += count;
        budget -= count;
      }
      if (queueHead < queue.length) {
        // The rest waits for the next frame; so does the unfinished line, which comes after it.
        schedule();
      } else {
        queue = [];
        queueHead = 0;
        if (partial !== drawnPartial) {
          drawPartial();
        }
      }
      if (follow && follow.checked) {
        scrollToBottom();
      }
    }

    /** Draws the line that has not ended yet into `tail`. */
    function drawPartial() {
      // A progress bar redraws one line with carriage returns, possibly for a long time; the
      // part before the last redraw is invisible, so it is dropped once `state` has taken in
      // its styles, and the line does not grow (nor its drawing slow down) without bound.
      if (partial.length > COMPACT_PARTIAL_AT) {
        const info = { clearedAt: -1 };
        renderLine(partial, state.clone(), info);
        if (info.clearedAt > 0) {
          renderLine(partial.slice(0, info.clearedAt), state);
          partial = partial.slice(info.clearedAt);
        }
      }
      // A copy of the style: the unfinished line is drawn again from its start when it ends.
      tail.innerHTML = renderLine(partial, state.clone());
      drawnPartial = partial;
    }

    function schedule() {
      if (frame === 0 && !ended) {
        frame = window.requestAnimationFrame(() => flush(false));
      }
    }

    function addText(text) {
      const pieces = text.split('\n');
      partial += pieces[0];
      if (pieces.length > 1) {
        queue.push(partial);
        for (let k = 1; k < pieces.length - 1; k++) {
          queue.push(pieces[k]);
        }
        partial = pieces[pieces.length - 1];
      }
      schedule();
    }

    const source = new EventSource(
      streamUrl + (streamUrl.indexOf('?') === -1 ? '?' : '&') + 'offset=' + expectedOffset,
    );
    setState('connecting');

    source.addEventListener('open', () => setState('streaming'));

    source.addEventListener('log', (event) => {
      const data = parseJson(event.data);
      if (!data || typeof data.text !== 'string') {
        return;
      }
      let text = data.text;
      const length = utf8Length(text);
      // The event id is the server's byte offset just after the text; it stays exact even when
      // the text held bytes that were not UTF-8 (each shown as one three-byte replacement).
      const after = Number.parseInt(event.lastEventId, 10);
      let offset = data.offset;
      if (!Number.isSafeInteger(offset)) {
        offset = Number.isSafeInteger(after) ? after - length : expectedOffset;
      }
      const end = Number.isSafeInteger(after) ? after : offset + length;
      if (end <= expectedOffset) {
        return;
      }
      if (offset < expectedOffset) {
        text = utf8Skip(text, expectedOffset - offset);
      }
      expectedOffset = end;
      addText(text);
    });

    source.addEventListener('status', (event) => {
      const data = parseJson(event.data);
      if (data) {
        updateStatus(data.status);
      }
    });

    source.addEventListener('end', (event) => {
      // Closing at once keeps EventSource from reconnecting when the server closes the stream.
      source.close();
      const data = parseJson(event.data);
      if (data) {
        updateStatus(data.status);
      }
      if (frame !== 0) {
        window.cancelAnimationFrame(frame);
        frame = 0;
      }
      flush(true);
      setState('ended');
      ended = true;
    });

    source.addEventListener('error', () => {
      // CONNECTING means EventSource retries by itself; CLOSED means it gave up (say a 404).
      setState(source.readyState === EventSource.CLOSED ? 'error' : 'reconnecting');
    });

    if (follow) {
      // A scroll upwards that follows the reader's own input means they want to read back, so
      // following stops; scrolls made here only ever go down.
      let lastTop = scrollTop();
      let lastInput = 0;
      const noteInput = () => {
        lastInput = Date.now();
      };
      for (const type of ['wheel', 'touchstart', 'touchmove', 'keydown', 'mousedown']) {
        window.addEventListener(type, noteInput, { passive: true, capture: true });
      }
      const target = scrollsItself ? log : window;
      target.addEventListener(
        'scroll',
        () => {
          const top = scrollTop();
          if (top < lastTop - 2 && Date.now() - lastInput < USER_INPUT_WINDOW_MS && follow.checked) {
            follow.checked = false;
          }
          lastTop = top;
        },
        { passive: true },
      );
      follow.addEventListener('change', () => {
        if (follow.checked) {
          scrollToBottom();
        }
      });
      if (follow.checked) {
        scrollToBottom();
      }
    }
  }

  if (typeof document !== 'undefined') {
    if (document.readyState === 'loading') {
      document.addEventListener('DOMContentLoaded', start);
    } else {
      start();
    }
  }

  // Lets the converter be checked with Node without a browser; browsers have no `module`.
  if (typeof module === 'object' && module !== null && module.exports) {
    module.exports = { ansiToHtml, renderLine, AnsiState, nearestXtermIndex, utf8Length, utf8Skip };
  }
})();
