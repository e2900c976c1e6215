"""The page's one inline script (no CDN, works from file://): the jump box, the row filter, sorting, the head
chooser, the token view, the neuron card and the position chooser. Everything it adds is optional: with
script off the tabs (pure CSS) and every table still read, and the tabs it alone can fill stay hidden."""

SCRIPT = r"""<script>(function(){
var root=document.currentScript.parentNode,$=function(s,e){return (e||root).querySelector(s);},
 $$=function(s,e){return [].slice.call((e||root).querySelectorAll(s));};
root.classList.add('js');$('.tools').hidden=false;
var blob=$('script[data-mg2]'),D=blob?JSON.parse(blob.textContent):{tokens:[]},uid=D.uid||'';
var status=$('[data-status]'),filter=$('[data-filter]'),jump=$('[data-jump]');
function radios(){return $$(':scope>input[type=radio]');}
function cur(){var r=$(':scope>input:checked');return r?r.id:'';}
function panel(id){return $('#p-'+(id||cur()));}
function open(id){var r=$('#'+id);if(r&&!r.checked){r.checked=true;refilter();}}
function byHash(){var h=location.hash.slice(1);try{h=decodeURIComponent(h);}catch(e){}   /* #% is no tab */
 if(h&&radios().some(function(r){return r.id===h;}))open(h);}
window.addEventListener('hashchange',byHash);
function low(e){return e._t||(e._t=e.textContent.toLowerCase());}
function parse(q){var m=/^\s*l?\s*(\d+)\s*(?:-|\s|h)\s*h?\s*(\d+)\s*$/i.exec(q),
 n=/^\s*l?\s*(\d+)\s*[-\s]?\s*n\s*(\d+)\s*$/i.exec(q);
 return n?{l:n[1],n:n[2]}:m?{l:m[1],h:m[2]}:null;}
function keyed(e,k){for(var a in k){var v=e.dataset[a];   /* a layer-0 grid (position0) has heads only */
 if(v===undefined){if(a==='l'&&k.l==='0'&&e.dataset.h!==undefined&&e.closest('figure.blk'))continue;return false;}
 if(v!==k[a])return false;}return true;}
/* -- the filter: rows of every table, and the figures of the grids and of the head view -------------- */
function refilter(){var q=filter.value.trim().toLowerCase(),p=panel();if(!p)return;var k=q?parse(q):null,n=0,all=0;
 var figs=$$('figure',p),pick=p.dataset.head;
 figs.forEach(function(f){var rows=f.classList.contains('head')?$$('tbody tr',f):[],any=0,
  capOk=!q||(k?keyed(f,k):low($('figcaption',f)).indexOf(q)>=0);
  rows.forEach(function(tr){var ok=capOk||(!k&&low(tr).indexOf(q)>=0);tr.hidden=!ok;any+=ok;});
  var show=q?(capOk||any>0):(pick===undefined||!f.classList.contains('head')||f.dataset.l+'-'+f.dataset.h===pick);
  f.hidden=!show;all++;n+=show;});
 $$('tbody tr',p).forEach(function(tr){if(tr.closest('figure'))return;all++;
  var ok=tr.dataset.off!=='1'&&(!q||(k?keyed(tr,k):low(tr).indexOf(q)>=0));tr.hidden=!ok;n+=ok;});
 status.classList.toggle('on',!!q);
 status.value=q?'filter "'+filter.value.trim()+'" on this tab: '+n+' of '+all+' shown (Esc clears)':'';}
filter.addEventListener('input',refilter);
filter.addEventListener('keydown',function(e){if(e.key==='Escape'){filter.value='';refilter();}});
radios().forEach(function(r){r.addEventListener('change',refilter);});
$$('.tabs>label').forEach(function(l){l.addEventListener('keydown',function(e){   /* tabs by keyboard too */
 if(e.key==='Enter'||e.key===' '){e.preventDefault();open(l.htmlFor);}});});
/* -- the head view: one head at a time ---------------------------------------------------------------- */
var hp=$('[data-headpick]'),hpanel=hp&&hp.closest('.panel');
function pickHead(v){if(!hp)return false;if(![].some.call(hp.options,function(o){return o.value===v;}))return false;
 hp.value=v;hpanel.dataset.head=v;refilter();return true;}
if(hp){hp.closest('p').hidden=false;pickHead(hp.value);hp.addEventListener('change',function(){pickHead(hp.value);});
 $$('[data-step]',hp.closest('p')).forEach(function(b){b.addEventListener('click',function(){
  var i=hp.selectedIndex+Number(b.dataset.step),o=hp.options;pickHead(o[(i+o.length)%o.length].value);});});
 hpanel.addEventListener('mouseover',function(e){var td=e.target.closest('td.pw');if(!td||td.title)return;
  var tr=td.closest('tr'),f=td.closest('figure'),src=$('#p-'+uid+(td.cellIndex===1?'patterns':'messages'));if(!src)return;
  var th=$('thead th[data-pos="'+$('td.tok',tr).dataset.pos+'"]',src),row=$('tr[data-l="'+f.dataset.l+'"][data-h="'+f.dataset.h+'"]',src);
  if(th&&row){tip(row.cells[th.cellIndex]);td.title=row.cells[th.cellIndex].title;}});}
function tip(td){var m=/^scores: ([\d.\s-]+)(.*)$/.exec(td.title||'');if(!m)return;var s=m[1].trim().split(/\s+/),
 w=td.textContent.split(', ');if(w.length!==s.length)return;td.title=w.map(function(x,i){return x+' '+s[i];}).join(', ')+m[2];}
root.addEventListener('mouseover',function(e){var td=e.target.closest&&e.target.closest('td[title^="scores: "]');if(td)tip(td);});
/* -- the token view: one token's pattern and message at every head of a layer ------------------------- */
var tv=panel(uid+'token_view'),L=D.L||0,H=D.H||0;
function cellOf(name,l,h,pos){var p=$('#p-'+uid+name);if(!p)return null;var th=$('thead th[data-pos="'+pos+'"]',p),
 tr=$('tr[data-l="'+l+'"][data-h="'+h+'"]',p);return th&&tr?tr.cells[th.cellIndex]:null;}
function esc(s){var d=document.createElement('div');d.textContent=s;return d.innerHTML;}
function tokenView(pos,l,quiet){if(!tv)return;pos=Number(pos);l=Math.max(0,Math.min(L-1,Number(l)||0));tv.dataset.pos=pos;tv.dataset.l=l;
 var t=D.tokens[pos]||'',rows='';
 for(var h=0;h<H;h++){var pc=cellOf('patterns',l,h,pos),mc=cellOf('messages',l,h,pos);
  rows+='<tr data-l="'+l+'" data-h="'+h+'"><td class="num s0">'+h+'</td>'+[pc,mc].map(function(c){return c?
   '<td class="'+c.className+'" title="'+esc(c.title)+'">'+esc(c.textContent)+'</td>':'<td>(not on this page)</td>';}).join('')+'</tr>';}
 var opts=D.tokens.map(function(x,i){return '<option value="'+i+'"'+(i===pos?' selected':'')+'>'+esc(x)+'</option>';}).join('');
 $('.tvbody',tv).innerHTML='<p class="chooser"><label>token <select data-tvtok>'+opts+'</select></label> <label>layer '
  +'<select data-tvl>'+Array.from({length:L},function(_,i){return '<option'+(i===l?' selected':'')+'>'+i+'</option>';}).join('')
  +'</select></label> <button type="button" data-tvstep="-1">◀ layer</button> <button type="button" data-tvstep="1">layer ▶</button>'
  +' <a href="#evolution" data-lens>'+esc(t)+' in the logit lens →</a></p><h3>'+esc(t)+' at layer '+l+'</h3>'
  +'<div class="scroll"><table><thead><tr><th class="s0">head</th><th>pattern words (what finds it)</th>'
  +'<th>message words (what it passes on)</th></tr></thead><tbody>'+rows+'</tbody></table></div>';
 $('[data-tvtok]',tv).onchange=function(){tokenView(this.value,l);};$('[data-tvl]',tv).onchange=function(){tokenView(pos,this.value);};
 $$('[data-tvstep]',tv).forEach(function(b){b.onclick=function(){tokenView(pos,(l+Number(b.dataset.tvstep)+L)%L);};});
 $('[data-lens]',tv).onclick=function(e){e.preventDefault();lens(pos);};
 if(!quiet)open(uid+'token_view');}
function lens(pos){var p=panel(uid+'evolution');if(!p)return;open(uid+'evolution');$$('.hit',root).forEach(function(x){x.classList.remove('hit');});
 var th=$('thead th[data-pos="'+pos+'"]',p);if(!th)return;th.classList.add('hit');
 $$('tbody tr',p).forEach(function(tr){var c=tr.cells[th.cellIndex];if(c)c.classList.add('hit');});th.scrollIntoView({block:'nearest',inline:'center'});}
root.addEventListener('click',function(e){var t=e.target.closest('table.pv th[data-pos],figure.head th[data-pos],td.tok');
 if(t&&root.contains(t))tokenView(t.dataset.pos,t.closest('tr')&&t.closest('tr').dataset.l||0);});
if(tv)tokenView(D.tokens.length-1,0,true);
/* -- the neuron card: any neuron, from the page's compact data (else the neurons tab's row) ------------ */
var C=D.cards,nc=panel(uid+'neuron_card'),u16,hb,acts;
function b64(s){var b=atob(s),a=new Uint8Array(b.length);for(var i=0;i<b.length;i++)a[i]=b.charCodeAt(i);return a.buffer;}
function act(c){return C.unit*Math.sinh(c*C.step);}
function heat(v){return 'h'+Math.min(10,Math.max(0,Math.round(v*10)));}
function fmt(v){return v===0?'--':Math.abs(v)>=100?v.toFixed(0):Number(v.toPrecision(3)).toString();}
function rowData(row){var hs=$$('thead th',row.closest('table')).map(function(th){return th.textContent;}),o={lists:{},vals:[]};
 ['input words','output words'].forEach(function(c){var i=hs.indexOf(c);if(i>=0)o.lists[c]=[row.cells[i].textContent,row.cells[i].classList.contains('hb')];});
 o.corpus=[];hs.forEach(function(c,i){if(/^\d+:/.test(c))o.vals.push(Number(row.cells[i].textContent.replace('--','0')));
  else if(/^corpus /.test(c))o.corpus.push([c,row.cells[i].textContent]);});return o;}
function corpusPage(){return $$('thead th',panel(uid+'neurons')||root).some(function(th){return th.textContent==='corpus #1';});}
function card(l,n){if(!nc)return false;l=Number(l);n=Number(n);var lists=[],vals=null,exact=false,
 row=$('tr[data-l="'+l+'"][data-n="'+n+'"]',panel(uid+'neurons')),R=row?rowData(row):null;
 if(C&&l<C.L&&n<C.m){if(!u16){u16=new Uint16Array(b64(C.ids));hb=new Uint8Array(b64(C.high));acts=C.acts?new Int8Array(b64(C.acts)):null;
   if(typeof C.words==='string')C.words=C.words.split('\n').map(function(w){return w.replace(/^ +/,function(m){return '·'.repeat(m.length);});});}
  for(var j=0;j<3;j++){var o=((l*C.m+n)*3+j)*C.k,w=[],bit=(l*C.m+n)*3+j,name=C.lists[j];for(var i=0;i<C.k;i++)w.push(C.words[u16[o+i]]);
   lists.push(R&&R.lists[name]?[name,R.lists[name][0],R.lists[name][1]]:[name+' (top '+C.k+')',w.join(', '),(hb[bit>>3]>>(bit&7))&1]);}
  if(acts){vals=[];for(var t=0;t<C.T;t++)vals.push(act(acts[(l*C.T+t)*C.m+n]));}}
 else if(R){for(var c in R.lists)lists.push([c,R.lists[c][0],R.lists[c][1]]);}
 else{$('.ncbody',nc).innerHTML='<p>Neuron L'+l+' N'+n+' is not on this page: add <code>--neurons '+l+'-'+n+'</code> to analyze, or read neurons.csv.</p>';open(uid+'neuron_card');return true;}
 if(R&&R.vals.length){vals=R.vals;exact=true;}
 var rank=row?$$('tbody tr',row.parentNode).indexOf(row)+1:0;
 var h='<h3>Neuron L'+l+' N'+n+(rank?' · #'+rank+' in the neurons tab (by effect)':' · not among the neurons tab\'s rows')+'</h3><table><tbody>'+lists.map(function(x){
  return '<tr><th>'+esc(x[0])+'</th><td class="words">'+esc(x[1])+(x[2]?' <i class="hb">(high bias: these are very frequent or very rare tokens)</i>':'')+'</td></tr>';}).join('')+'</tbody></table>';
 if(R&&R.corpus.length)h+='<h3>In the corpus</h3><table><tbody>'+R.corpus.map(function(x){
  return '<tr><th>'+esc(x[0])+'</th><td class="words">'+esc(x[1])+'</td></tr>';}).join('')+'</tbody></table>';
 else if(corpusPage())h+='<p class="note">Its corpus contexts are in the store: <code>minigpt2 neuron '+l+'-'+n+' --corpus STORE</code> (the page holds those of the neurons tab\'s rows).</p>';
 if(vals&&vals.length){h+='<h3>Activation at each token'+(exact?'':' (to 2 digits)')+'</h3><div class="scroll"><table><thead><tr>'+D.tokens.map(function(x,i){
  return '<th data-pos="'+i+'">'+i+':'+esc(x)+'</th>';}).join('')+'</tr></thead><tbody><tr>'+vals.map(function(v){
  return '<td class="num '+heat(v)+'" title="'+(exact?'':'about ')+v.toPrecision(3)+'">'+(exact?fmt(v):fmt2(v))+'</td>';}).join('')+'</tr></tbody></table></div>';}
 else h+='<p class="note">This prompt is long: its activations are in mlp_acts.npy ([L, T, m]).</p>';
 $('.ncbody',nc).innerHTML=h;$('[data-ncq]',nc).value='L'+l+' N'+n;open(uid+'neuron_card');return true;}
function fmt2(v){return Math.abs(v)<0.0005?'--':Number(v.toPrecision(2)).toString();}
if(nc){$('[data-ncq]',nc).addEventListener('keydown',function(e){var k=parse(this.value);if(e.key==='Enter'&&k&&k.n!==undefined)card(k.l,k.n);});
 $('.ncbody',nc).innerHTML='<p class="note">Type a neuron, e.g. L2 N666, here or in the jump box.</p>';}
/* -- the jump box: a head, a neuron, a token or a word; Enter again goes to the next match ------------- */
var last=null,hits=[],at=-1;
function tabName(p){return $('label[for="'+p.id.slice(2)+'"]').textContent;}
jump.addEventListener('keydown',function(e){if(e.key!=='Enter')return;var q=this.value.trim();if(!q)return;
 $$('.hit',root).forEach(function(x){x.classList.remove('hit');});var k=parse(q);
 if(k&&k.n!==undefined){if(card(k.l,k.n)){status.value='neuron card: L'+k.l+' N'+k.n;return;}}
 if(k&&k.h!==undefined&&pickHead(k.l+'-'+k.h)){open(hpanel.id.slice(2));var f=$('figure.head[data-l="'+k.l+'"][data-h="'+k.h+'"]',hpanel);
  ($('.hvpick',hpanel)||f).scrollIntoView({block:'start'});status.value='head '+k.l+'-'+k.h+' in '+tabName(hpanel);return;}
 if(q!==last){last=q;at=-1;var w=q.toLowerCase(),ws=w.replace(/^[·\s]+/,'');hits=[];
  D.tokens.forEach(function(x,i){if(x.toLowerCase().replace(/^[·\s]+/,'')===ws&&tv)hits.push({tok:i});});
  $$('.panel').forEach(function(p){if(p===tv||p===nc)return;$$('tbody tr',p).forEach(function(tr){
   if(k?keyed(tr,k):low(tr).indexOf(w)>=0)hits.push({p:p,tr:tr});});});}
 if(!hits.length){status.value='not found: '+q+(k&&k.n!==undefined?' (neurons outside the page: --neurons '+k.l+'-'+k.n+')':'');return;}
 at=(at+1)%hits.length;var x=hits[at],more=' (match '+(at+1)+' of '+hits.length+'; Enter: next)';
 if(x.tok!==undefined){tokenView(x.tok,tv.dataset.l||0);status.value='token view: '+D.tokens[x.tok]+more;return;}
 var f2=x.tr.closest('figure.head');if(f2)pickHead(f2.dataset.l+'-'+f2.dataset.h);open(x.p.id.slice(2));
 x.tr.hidden=false;x.tr.classList.add('hit');x.tr.scrollIntoView({block:'center'});status.value=(k&&k.h!==undefined&&hp?
  'head '+k.l+'-'+k.h+' is not in the head view (a long prompt: its first heads only); ':'')+'found in '+tabName(x.p)+more;});
/* -- sorting: a column header sorts its table (click, or Enter/Space when focused); again: reverse ----- */
function num(s){s=s.trim();if(s==='--')return 0;var v=parseFloat(s);return s!==''&&isFinite(v)&&/^[-+]?[\d.]/.test(s)?v:null;}
function sortBy(th){var tb=th.closest('table'),body=tb.tBodies[0],i=th.cellIndex,dir=th.getAttribute('aria-sort')==='descending'?1:-1;
 $$('thead th',tb).forEach(function(x){x.removeAttribute('aria-sort');});th.setAttribute('aria-sort',dir>0?'ascending':'descending');
 var rows=[].slice.call(body.rows),key=rows.map(function(r){var c=r.cells[i],t=c?c.textContent:'';return [num(t),t,r];});
 key.sort(function(a,b){if(a[0]!==null&&b[0]!==null)return dir*(a[0]-b[0]);if(a[0]!==null)return -1;if(b[0]!==null)return 1;
  return dir*a[1].localeCompare(b[1]);});
 key.forEach(function(x){x[2].classList.remove('sep');body.appendChild(x[2]);});}
$$('.panel table:not(.grid)>thead th').forEach(function(th){if(th.dataset.pos&&th.closest('table.pv,figure.head'))return;
 th.classList.add('sort');th.tabIndex=0;th.title=th.title||'sort by this column (click again: reverse)';});
root.addEventListener('click',function(e){var th=e.target.closest('th.sort');if(th&&!e.target.closest('figure.head th[data-pos]'))sortBy(th);});
root.addEventListener('keydown',function(e){var th=e.target.closest&&e.target.closest('th.sort');
 if(th&&(e.key==='Enter'||e.key===' ')){e.preventDefault();sortBy(th);}});
/* -- the position chooser (streams) ------------------------------------------------------------------- */
$$('[data-chooser]').forEach(function(s){s.closest('p').hidden=false;var rows=$$('tbody tr[data-sel]',s.closest('.mg2'));
 function pick(){rows.forEach(function(tr){tr.dataset.off=tr.dataset.sel===s.value?'0':'1';});refilter();}
 s.value=s.options[s.options.length-1].value;s.addEventListener('change',pick);pick();});
byHash();refilter();
})();</script>"""
