// wskit demo page: a chat room (wskit.chat.v2.json) and a pub/sub ticker (wskit.pubsub.v1.json).
// Plain browser JavaScript, no build step. Everything received is rendered with textContent.
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  // ?ws=ws://host:port/path points the page at another endpoint; default: this server's /ws.
  const ENDPOINT = params.get("ws") ||
    (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  const CHAT_PROTOCOL = "wskit.chat.v2.json";
  const PUBSUB_PROTOCOL = "wskit.pubsub.v1.json";
  const TICKER_TOPIC = params.get("topic") || "ticks.demo";
  const SPARK_POINTS = 30;

  // A server started with --auth-secret wants a token (see `wskit token`). Give it in the
  // fragment, #token=...: a fragment never reaches the server, so the token stays out of
  // HTTP access logs; it is then removed from the address bar. ?token= works too.
  const fragment = new URLSearchParams(location.hash.slice(1));
  let TOKEN = fragment.get("token") || params.get("token") || "";
  if (fragment.has("token") || params.has("token")) {
    params.delete("token");
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
  }

  // Browsers cannot set headers on a WebSocket: the token travels as ?token= on its URL.
  function endpointUrl() {
    if (!TOKEN) return ENDPOINT;
    return ENDPOINT + (ENDPOINT.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN);
  }

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };

  $("endpoint").textContent = ENDPOINT;
  for (const node of document.querySelectorAll(".endpoint-copy")) node.textContent = ENDPOINT;

  function showNegotiated(ws, prefix) {
    // What the server agreed to: ws.protocol is the subprotocol, ws.extensions the
    // Sec-WebSocket-Extensions response (permessage-deflate and its parameters).
    $(prefix + "-protocol").textContent = ws.protocol || "(none)";
    $(prefix + "-extensions").textContent = ws.extensions || "(none)";
    $(prefix + "-extensions").title = ws.extensions || "";
  }

  function clearNegotiated(prefix) {
    $(prefix + "-protocol").textContent = "–";
    $(prefix + "-extensions").textContent = "–";
  }

  function clock(seconds) {
    const d = seconds ? new Date(seconds * 1000) : new Date();
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function closeText(ev) {
    if (ev.code === 1006) {
      return "connection lost (1006): the server refused or dropped it" +
        (TOKEN ? " (is the token valid?)" : " (does it want a token? paste one above)");
    }
    return "closed (" + ev.code + (ev.reason ? ": " + ev.reason : "") + ")";
  }

  // ---------------------------------------------------------------- chat

  const chat = {
    ws: null,
    room: null,
    nick: null,
    members: new Set(),
    seen: new Set(),
  };

  const nickInput = $("nick");
  const roomInput = $("room");
  nickInput.value = params.get("nick") || "guest-" + Math.floor(1000 + Math.random() * 9000);
  if (params.get("room")) roomInput.value = params.get("room");

  function chatStatus(text, kind) {
    const status = $("chat-status");
    status.textContent = text;
    status.className = "status" + (kind ? " " + kind : "");
  }

  function setJoined(joined) {
    $("say-text").disabled = !joined;
    $("say").disabled = !joined;
    $("leave").disabled = !joined;
    if (joined) $("say-text").focus();
  }

  function renderMembers() {
    const list = $("members");
    list.replaceChildren();
    for (const nick of [...chat.members].sort()) {
      const item = el("li", nick === chat.nick ? "me" : "", nick);
      list.append(item);
    }
    $("members-room").textContent = chat.room || "–";
  }

  function addLine(node) {
    const list = $("messages");
    const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
    list.append(node);
    while (list.children.length > 500) list.firstChild.remove();
    if (stick) list.scrollTop = list.scrollHeight;
  }

  function addMessage(msg, fromHistory) {
    if (msg.id !== undefined && msg.id !== null) {
      const key = msg.room + "/" + msg.id;
      if (chat.seen.has(key)) return;
      chat.seen.add(key);
    }
    const item = el("li", "message" + (msg.from === chat.nick ? " mine" : "") + (fromHistory ? " history" : ""));
    item.dataset.from = msg.from;
    item.append(el("time", "ts", clock(msg.ts)), el("span", "from", msg.from), el("span", "text", msg.text));
    addLine(item);
  }

  function addNotice(text) {
    addLine(el("li", "notice", text));
  }

  function chatReceived(msg) {
    switch (msg.type) {
      case "joined":
        chat.room = msg.room;
        chat.nick = msg.nick;
        chat.members = new Set(msg.members || []);
        $("messages").replaceChildren();
        chat.seen.clear();
        for (const old of msg.history || []) addMessage(old, true);
        addNotice("You joined " + msg.room + " as " + msg.nick + ".");
        renderMembers();
        setJoined(true);
        chatStatus("In room " + msg.room + " as " + msg.nick + " · " + chat.members.size + " here", "ok");
        break;
      case "message":
        if (msg.room === chat.room) addMessage(msg, false);
        break;
      case "presence":
        if (msg.room !== chat.room) break;
        if (msg.event === "join") chat.members.add(msg.nick);
        else chat.members.delete(msg.nick);
        addNotice(msg.nick + (msg.event === "join" ? " joined." : " left."));
        renderMembers();
        chatStatus("In room " + chat.room + " as " + chat.nick + " · " + chat.members.size + " here", "ok");
        break;
      case "left":
        if (msg.room === chat.room) {
          addNotice("You left " + msg.room + ".");
          chat.room = null;
          chat.members.clear();
          renderMembers();
          setJoined(false);
          chatStatus("Not in a room. Join one to chat.");
        }
        break;
      case "error":
        chatStatus("Server says: " + msg.message + (msg.code ? " (" + msg.code + ")" : ""), "error");
        break;
    }
  }

  function chatSend(obj) {
    chat.ws.send(JSON.stringify(obj));
  }

  function chatConnect() {
    return new Promise((resolve, reject) => {
      if (chat.ws && chat.ws.readyState === WebSocket.OPEN) return resolve(chat.ws);
      chatStatus("Connecting to " + ENDPOINT + "…");
      const ws = new WebSocket(endpointUrl(), [CHAT_PROTOCOL]);
      chat.ws = ws;
      ws.onopen = () => {
        showNegotiated(ws, "chat");
        if (ws.protocol !== CHAT_PROTOCOL) {
          chatStatus("The server did not agree to " + CHAT_PROTOCOL + " (got " + (ws.protocol || "none") + ").", "error");
          ws.close(1000);
          return reject(new Error("subprotocol"));
        }
        resolve(ws);
      };
      ws.onmessage = (ev) => {
        try {
          chatReceived(JSON.parse(ev.data));
        } catch (err) {
          console.error("bad chat message", ev.data, err);
        }
      };
      ws.onclose = (ev) => {
        if (chat.ws !== ws) return;
        clearNegotiated("chat");
        chat.ws = null;
        chat.room = null;
        chat.members.clear();
        renderMembers();
        setJoined(false);
        chatStatus("Chat " + closeText(ev) + ". Join to reconnect.", "error");
        reject(new Error("closed"));
      };
    });
  }

  $("join-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const nick = nickInput.value.trim();
    const room = roomInput.value.trim();
    if (!nick || !room) return;
    try {
      await chatConnect();
    } catch (err) {
      return;
    }
    if (chat.room && chat.room !== room) chatSend({ type: "leave", room: chat.room });
    chat.nick = nick;
    chatSend({ type: "join", room: room, nick: nick });
  });

  $("leave").addEventListener("click", () => {
    if (chat.ws && chat.room) chatSend({ type: "leave", room: chat.room });
  });

  $("say-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("say-text");
    const text = input.value.trim();
    if (!text || !chat.ws || !chat.room) return;
    chatSend({ type: "say", room: chat.room, text: text });
    input.value = "";
  });

  // ---------------------------------------------------------------- ticker

  const ticker = { ws: null, count: 0, rows: new Map(), retry: 1000 };

  function tickerStatus(text, kind) {
    const node = $("ticker-status");
    node.textContent = text;
    node.className = kind || "";
  }

  function sparkline(points) {
    const svgNS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("viewBox", "0 0 100 24");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.classList.add("spark");
    const line = document.createElementNS(svgNS, "polyline");
    svg.append(line);
    return { svg, line, points };
  }

  function drawSpark(spark) {
    const pts = spark.points;
    if (pts.length < 2) return;
    const lo = Math.min(...pts), hi = Math.max(...pts);
    const span = hi - lo || 1;
    const coords = pts.map((p, i) => {
      const x = (i / (pts.length - 1)) * 100;
      const y = 22 - ((p - lo) / span) * 20;
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    spark.line.setAttribute("points", coords.join(" "));
    spark.svg.classList.toggle("down", pts[pts.length - 1] < pts[0]);
  }

  function tickerRow(symbol) {
    let row = ticker.rows.get(symbol);
    if (row) return row;
    const tr = el("tr");
    tr.dataset.symbol = symbol;
    const price = el("td", "num price"), change = el("td", "num change"), sparkCell = el("td", "spark-col");
    const spark = sparkline([]);
    sparkCell.append(spark.svg);
    tr.append(el("td", "symbol", symbol), price, change, sparkCell);
    $("ticker-rows").append(tr);
    row = { tr, price, change, spark };
    ticker.rows.set(symbol, row);
    return row;
  }

  function tickerEvent(data) {
    ticker.count += 1;
    $("ticker-count").textContent = String(ticker.count);
    $("ticker-last").textContent = clock(data && data.time);
    if (!data || typeof data !== "object" || !("symbol" in data)) return;
    const row = tickerRow(String(data.symbol));
    const price = Number(data.price);
    const change = Number(data.change || 0);
    row.price.textContent = price.toFixed(2);
    row.change.textContent = (change > 0 ? "+" : "") + change.toFixed(2);
    row.tr.classList.remove("up", "down", "flash");
    void row.tr.offsetWidth; // restart the flash animation
    row.tr.classList.add(change >= 0 ? "up" : "down", "flash");
    row.spark.points.push(price);
    if (row.spark.points.length > SPARK_POINTS) row.spark.points.shift();
    drawSpark(row.spark);
  }

  function tickerConnect() {
    const ws = new WebSocket(endpointUrl(), [PUBSUB_PROTOCOL]);
    ticker.ws = ws;
    tickerStatus("connecting…");
    ws.onopen = () => {
      ticker.retry = 1000;
      showNegotiated(ws, "ticker");
      ws.send(JSON.stringify({ type: "subscribe", topic: TICKER_TOPIC }));
    };
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (err) {
        return;
      }
      if (msg.type === "subscribed") {
        tickerStatus("subscribed, waiting for ticks…", "ok");
      } else if (msg.type === "event" && msg.topic === TICKER_TOPIC) {
        if (ticker.count === 0) tickerStatus("live", "ok live");
        $("ticker-raw").textContent = ev.data;
        tickerEvent(msg.data);
      } else if (msg.type === "error") {
        tickerStatus("server says: " + msg.message, "error");
      }
    };
    ws.onclose = (ev) => {
      clearNegotiated("ticker");
      const wait = ticker.retry;
      ticker.retry = Math.min(ticker.retry * 2, 30000);
      tickerStatus(closeText(ev) + "; retrying in " + Math.round(wait / 1000) + " s", "error");
      setTimeout(tickerConnect, wait);
    };
  }

  $("second-window").addEventListener("click", (ev) => {
    ev.preventDefault();
    const query = new URLSearchParams({ room: roomInput.value.trim() || "lobby" });
    if (params.get("ws")) query.set("ws", params.get("ws"));
    query.set("autojoin", "");
    const fragment = TOKEN ? "#token=" + encodeURIComponent(TOKEN) : "";
    window.open(location.pathname + "?" + query.toString() + fragment, "_blank");
  });

  // ---------------------------------------------------------------- token

  const tokenInput = $("token");
  tokenInput.value = TOKEN;
  function showTokenHint() {
    $("nick-hint").hidden = !TOKEN;
  }
  showTokenHint();
  $("token-form").addEventListener("submit", (ev) => ev.preventDefault());
  tokenInput.addEventListener("change", () => {
    TOKEN = tokenInput.value.trim();
    showTokenHint();
    // Reconnect both panels with the new token.
    if (chat.ws) chat.ws.close(1000);
    if (ticker.ws) {
      ticker.retry = 100;
      ticker.ws.close(1000);
    }
  });

  tickerConnect();
  if (params.get("autojoin") !== null) $("join-form").requestSubmit();
})();
