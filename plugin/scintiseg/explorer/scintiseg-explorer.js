// ScintiSeg in Orthanc Explorer (loaded with orthanc.ExtendOrthancExplorer).
//
// On a study's page, a "ScintiSeg" box under "Access" shows the segmentation status and,
// per image, the gland area and the cold nodules; it links to the preview picture and to
// the study in the OHIF viewer. It refreshes itself while the study is pending/processing.
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

  function frameLines(image) {
    var lines = [];
    var frames = image.frames || [];
    for (var i = 0; i < frames.length; i++) {
      var f = frames[i];
      var prefix = frames.length > 1 ? 'Frame ' + f.frame + ': ' : '';
      var area = f.gland_area_mm2 !== null ? fmt(f.gland_area_mm2, 'mm\u00b2') : fmt(f.gland_pixels, 'px');
      lines.push(prefix + 'gland ' + area + ', ' + fmt(f.gland_counts, 'counts') + ', right/left ' +
                 fmt(f.right_lobe_share_pct) + '/' + fmt(f.left_lobe_share_pct) + ' %');
      var nodules = f.nodules || [];
      if (!nodules.length) {
        lines.push(prefix + 'no cold nodule');
      }
      for (var j = 0; j < nodules.length; j++) {
        var n = nodules[j];
        lines.push(prefix + 'cold nodule ' + n.number + ': ' +
                   (n.area_mm2 !== null ? fmt(n.area_mm2, 'mm\u00b2') : fmt(n.pixels, 'px')) +
                   ', ' + n.lobe + ' lobe, ' + n.pole + ' pole, count ratio ' + fmt(n.count_ratio));
      }
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
