// ScintiSeg in Orthanc Explorer (loaded with orthanc.ExtendOrthancExplorer).
//
// On a study's page, a "ScintiSeg" box under "Access" shows the segmentation status and,
// per image, each label the models made (area, counts, lobe shares, numbered components
// such as cold nodules: whatever the answer carries, so a new label needs no change here)
// and the image's quality flags; it links to the preview picture and to the study in the
// OHIF viewer. It refreshes itself while the study is pending/processing.
// When physicians labelled the study's images (GET /scintiseg/studies/{id}/labels), it shows
// the AI-vs-physician agreement of each label (Dice per label, nodules found by each side) and
// the reason of each refused label object.
// When the ScintiSeg API does not answer (plugin off, older server) the box says so and
// nothing else on the page changes. Orthanc Explorer 1.x: jQuery 1.7, jQuery Mobile 1.1.
(function () {
  'use strict';

  var PANEL_ID = 'scintiseg-panel';
  var REFRESH_MS = 4000;
  var timer = null;

  function fmt(value, unit) {
    if (value === null || value === undefined) {
      return '?';
    }
    return String(value) + (unit ? ' ' + unit : '');
  }

  function item(text, theme) {
    var li = $('<li>').text(text);
    if (theme) {
      li.attr('data-theme', theme);
    }
    return li;
  }

  function linkItem(text, href, icon) {
    return $('<li>')
      .attr('data-icon', icon || 'arrow-r')
      .append($('<a>').attr('href', href).attr('target', '_blank').attr('rel', 'noopener').text(text));
  }

  function size(entry) {
    if (entry.area_mm2 !== null && entry.area_mm2 !== undefined) {
      return fmt(entry.area_mm2, 'mm\u00b2');
    }
    return fmt(entry.pixels, 'px');
  }

  function labelLines(prefix, label) {
    var name = (label.name || label.key).toLowerCase();
    var lines = [];
    if (label.numbered) {
      var parts = label.components || [];
      if (!parts.length) {
        return [prefix + 'no ' + name];
      }
      for (var j = 0; j < parts.length; j++) {
        var n = parts[j];
        lines.push(prefix + name + ' ' + n.number + ': ' + size(n) + ', ' + n.lobe + ' lobe, ' + n.pole +
                   ' pole, count ratio ' + fmt(n.count_ratio));
      }
      return lines;
    }
    var text = prefix + name + ' ' + size(label);
    if (label.counts !== null && label.counts !== undefined) {
      text += ', ' + fmt(label.counts, 'counts');
    }
    if (label.right_lobe_share_pct !== undefined) {
      text += ', right/left ' + fmt(label.right_lobe_share_pct) + '/' + fmt(label.left_lobe_share_pct) + ' %';
    }
    return [text];
  }

  function frameLines(image) {
    var lines = [];
    var frames = image.frames || [];
    for (var i = 0; i < frames.length; i++) {
      var f = frames[i];
      var prefix = frames.length > 1 ? 'Frame ' + f.frame + ': ' : '';
      var labels = f.labels || [];
      for (var k = 0; k < labels.length; k++) {
        lines = lines.concat(labelLines(prefix, labels[k]));
      }
    }
    return lines;
  }

  function flagLines(image) {
    var lines = [];
    var flags = image.flags || [];
    for (var i = 0; i < flags.length; i++) {
      lines.push('Flag ' + flags[i].code + (flags[i].message ? ': ' + flags[i].message : ''));
    }
    return lines;
  }

  function render(panel, uuid, result, studyUid) {
    panel.children('li:not([data-role="list-divider"])').remove();
    if (!result) {
      panel.append(item('ScintiSeg is not available on this server', 'c'));
    } else {
      var theme = { done: 'b', failed: 'e', skipped: 'c' }[result.status] || 'c';
      panel.append(item('Status: ' + result.status + (result.reason ? ' \u2013 ' + result.reason : ''), theme));
      var images = result.images || [];
      for (var i = 0; i < images.length; i++) {
        var title = images.length > 1 ? 'Image ' + (i + 1) + ': ' : '';
        if (images[i].status !== 'done') {
          panel.append(item(title + images[i].status + ' \u2013 ' + images[i].reason));
          continue;
        }
        var lines = frameLines(images[i]);
        for (var k = 0; k < lines.length; k++) {
          panel.append(item(title + lines[k]));
        }
        var flags = flagLines(images[i]);
        for (var q = 0; q < flags.length; q++) {
          panel.append(item(title + flags[q], 'e'));
        }
      }
      if (result.models && result.models.length) {
        var names = [];
        for (var m = 0; m < result.models.length; m++) {
          names.push(result.models[m].ident);
        }
        panel.append(item('Models: ' + names.join(', ')));
      }
      if (result.seg_instance_ids && result.seg_instance_ids.length) {
        panel.append(linkItem('Preview (PNG)', '../scintiseg/studies/' + uuid + '/preview.png', 'search'));
      }
    }
    if (studyUid) {
      // with a SEG: open the study with the segmentation over the image (OHIF's SEG protocol)
      var hasSeg = result && result.seg_instance_ids && result.seg_instance_ids.length;
      panel.append(linkItem('Open in OHIF viewer', '../ohif/viewer?StudyInstanceUIDs=' +
                            encodeURIComponent(studyUid) + (hasSeg ? '&hangingProtocolId=@ohif/seg' : ''),
                            'grid'));
    }
    try {
      panel.listview('refresh');
    } catch (e) {
      panel.listview();
    }
  }

  function person(name) {
    return String(name || 'physician').replace(/\^+/g, ' ').trim();
  }

  function agreementLines(labels) {
    var lines = [];
    for (var i = 0; i < labels.length; i++) {
      var label = labels[i];
      var by = label.kind + ', ' + person(label.provenance && label.provenance.who);
      if (label.status === 'refused') {
        lines.push({ text: 'Physician label refused (' + label.kind + '): ' + label.reason, theme: 'e' });
        continue;
      }
      if (label.status !== 'accepted') {
        continue;
      }
      var images = label.images || [];
      for (var j = 0; j < images.length; j++) {
        var a = images[j].agreement;
        if (!a) {
          lines.push({ text: 'Physician label (' + by + '): no ScintiSeg result to compare with yet' });
          continue;
        }
        var parts = [];
        for (var name in a.dice) {
          if (Object.prototype.hasOwnProperty.call(a.dice, name)) {
            parts.push(name + ' Dice ' + (a.dice[name] === null ? 'n/a' : Number(a.dice[name]).toFixed(2)));
          }
        }
        if (a.nodules) {
          parts.push('nodules ' + a.nodules.matched + ' of ' + a.nodules.physician + ' found by the AI, ' +
                     a.nodules.ai_only + ' found by the AI only');
        }
        lines.push({ text: 'Physician agreement (' + by + '): ' + parts.join(', '), theme: 'b' });
      }
    }
    return lines;
  }

  function loadAgreement(panel, uuid) {
    $.ajax({
      url: '../scintiseg/studies/' + uuid + '/labels',
      dataType: 'json',
      cache: false,
      timeout: 10000,
      success: function (answer) {
        if ($.mobile.pageData === undefined || $.mobile.pageData.uuid !== uuid) {
          return;
        }
        panel.children('li.scintiseg-agreement').remove();
        var lines = agreementLines((answer && answer.labels) || []);
        for (var i = 0; i < lines.length; i++) {
          panel.append(item(lines[i].text, lines[i].theme).addClass('scintiseg-agreement'));
        }
        try {
          panel.listview('refresh');
        } catch (e) {
          panel.listview();
        }
      }
      // no labels route (labels off, older server): nothing to add
    });
  }

  function load(uuid) {
    var panel = $('#' + PANEL_ID);
    if (!panel.length || $.mobile.pageData === undefined || $.mobile.pageData.uuid !== uuid) {
      return;  // the user left this study meanwhile
    }
    var studyUid = panel.data('study-uid');
    $.ajax({
      url: '../scintiseg/studies/' + uuid,
      dataType: 'json',
      cache: false,
      timeout: 10000,
      success: function (result) {
        render(panel, uuid, result, studyUid);
        loadAgreement(panel, uuid);
        if (result && (result.status === 'pending' || result.status === 'processing')) {
          timer = setTimeout(function () { load(uuid); }, REFRESH_MS);
        }
      },
      error: function () {
        render(panel, uuid, null, studyUid);
      }
    });
  }

  $('#study').live('pagebeforeshow', function () {
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
    $('#' + PANEL_ID).remove();
    if (!$.mobile.pageData || !$.mobile.pageData.uuid) {
      return;
    }
    var uuid = $.mobile.pageData.uuid;
    var panel = $('<ul>')
      .attr('id', PANEL_ID)
      .attr('data-role', 'listview')
      .attr('data-inset', 'true')
      .attr('data-theme', 'd')
      .attr('data-divider-theme', 'c')
      .append($('<li>').attr('data-role', 'list-divider').text('ScintiSeg'))
      .append(item('Loading\u2026'));
    panel.insertAfter($('#study-access'));
    panel.listview();
    $.ajax({
      url: '../studies/' + uuid,
      dataType: 'json',
      cache: false,
      timeout: 10000,
      success: function (study) {
        panel.data('study-uid', (study.MainDicomTags || {}).StudyInstanceUID || null);
      },
      complete: function () {
        load(uuid);
      }
    });
  });
})();
