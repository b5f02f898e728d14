"""Synthetic chat text for bench/archive_bench.py: English and Chinese, Zipf-distributed words.

Vocabularies are ranked by frequency: real words first (roughly in order of use in chat), then
a long tail of made-up words (English syllables, rare Chinese character pairs and triples) so
that the rarest words of a million messages occur a few dozen times, like names and jargon.
Word rank r is drawn with weight 1/r (Zipf, s = 1). Everything is seeded: the same seed gives
the same messages.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

ENGLISH_COMMON = """
the to i you and a it is of that in for we have be on this not with it's do are so just
but can i'm was at what if my get all will me know like about think don't out up no yes
there they one now can't your how good time go people well as or from see need make
would want some more should then still here did any back an today also work really right
because new check could too let's let when thanks our going who sure which by them been
meeting day something maybe were why way got much take other thing look into only over
after update tomorrow please has done try thought issue problem before same first week
does said us even fix last doc docs build test tests release code team fine next use
morning call link version than around working again sorry might where point already
great nice agree question long change changes review merge branch deploy server error
data report help quick lunch afternoon friday monday tuesday wednesday thursday weekend
since through plan idea feature ticket bug user users customer send sent email file
files page thing things talk later soon yet never always often probably actually
though while least most many few every each another such own small big old high low
open close closed start started finish finished run running wait waiting ready happy
office home remote meeting notes slide slides draft budget deadline schedule project
design backend frontend database query cache latency memory disk network login logout
config setting settings option options script scripts tool tools support ops incident
alert alerts outage rollback hotfix staging production sprint standup retro roadmap
spec specs estimate estimates priority blocker blocked owner owners approve approved
comment comments thread channel room message messages reply replies ping pinged sync
calendar invite invited coffee dinner travel flight train hotel conference demo client
contract invoice payment pricing sales marketing launch launched metric metrics chart
dashboard graph numbers target targets goal goals quarter month year hour minute minutes
second seconds early late quickly slowly important urgent simple hard easy clear clean
broken stable flaky slow fast faster slower bigger smaller better worse best worst
everyone someone anyone nobody somebody everything nothing anything somewhere together
without within between during against under above below across along behind beyond
remember forgot forget learn learned teach explain understand understood believe
guess wonder hope wish expect mean meant seem seems seemed happen happened happens
write wrote written read reading listen heard hear watch watched move moved keep kept
bring brought leave left stay stayed meet met show showed shown turn turned follow
followed stop stopped create created remove removed delete deleted add added rename
renamed upgrade upgraded install installed restart restarted configure migrate migration
benchmark profile profiling optimize refactor cleanup rewrite upstream downstream
dependency dependencies package packages library libraries framework container image
cluster node nodes worker workers queue queues stream streams archive search index
indexes timeout timeouts retry retries throttle limit limits quota permission access
token tokens secret secrets certificate password account accounts profile profiles
mobile desktop browser android iphone laptop screen keyboard mouse monitor printer
weather rain sunny cold warm snow holiday vacation birthday party music movie game
football soccer tennis running cycling pizza burger salad sushi noodles tea beer wine
""".split()

# Two-character English words: answered by the word index, not the trigrams.
ENGLISH_SHORT = ["ok", "go", "me", "up", "no", "so", "do", "at", "on", "it", "is", "to", "hi"]

ENGLISH_SYLLABLES = """
ba be bi bo bu da de di do du fa fe fi fo ga ge gi go ka ke ki ko ku la le li lo lu ma me mi
mo mu na ne ni no nu pa pe pi po pu ra re ri ro ru sa se si so su ta te ti to tu va ve vi vo
za ze zi zo bra bre bri cro dra fla fle gra gri kra pla pri sta ste sti stra tra tri tro vel
ver ven ten tan ton lin lan lon mar mor mer sor sar nor nar gen gan lex lix dor dar bel bor
""".split()

CHINESE_COMMON = """
的 了 是 我 你 他 在 有 不 这 就 也 我们 一个 好 吗 吧 呢 啊 没有 什么 今天 明天 现在
可以 知道 觉得 还是 因为 所以 但是 如果 已经 问题 时候 大家 这个 那个 一下 看看 应该 需要
会议 项目 工作 时间 晚上 下午 上午 周末 谢谢 好的 没问题 为什么 怎么 怎么样 可能 一起 自己
他们 你们 东西 事情 地方 朋友 公司 老板 同事 客户 产品 设计 测试 上线 发布 版本 代码 服务器
数据 数据库 接口 文档 需求 进度 计划 安排 讨论 确认 检查 修改 更新 部署 回滚 报错 日志 监控
告警 故障 性能 优化 延迟 内存 网络 缓存 搜索 消息 房间 频道 邮件 电话 视频 截图 链接 附件
周一 周二 周三 周四 周五 下周 上周 这周 月底 季度 预算 合同 发票 付款 报价 市场 销售 用户
体验 功能 页面 按钮 登录 注册 密码 账号 权限 配置 环境 测试环境 生产环境 分支 合并 提交
评审 审核 负责 跟进 处理 解决 反馈 建议 意见 方案 目标 结果 原因 影响 风险 优先级 截止
吃饭 午饭 晚饭 咖啡 奶茶 火锅 外卖 下班 加班 请假 出差 开会 迟到 早点 休息 睡觉 起床 周报
天气 下雨 很冷 很热 出门 回家 地铁 高铁 飞机 酒店 机场 生日 聚会 电影 音乐 游戏 跑步 健身
非常 特别 真的 其实 当然 比较 一直 马上 刚才 以后 之前 之后 最近 终于 突然 好像 一定 估计
开心 麻烦 辛苦 厉害 简单 复杂 重要 紧急 清楚 明白 同意 支持 帮忙 帮助 记得 忘了 希望 相信
新的 旧的 大的 小的 快点 慢点 多少 几个 一些 很多 所有 每天 每周 第一 第二 最后 一样 不同
这样 那样 这里 那里 哪里 谁 还有 而且 或者 然后 不过 虽然 只是 只有 一点 有点 差不多 一会儿
""".split()

# Less common characters, for the made-up tail: pairs and triples of these are rare words.
CHINESE_RARE_CHARS = """
琥珀翡翠玛瑙珊瑚琉璃璀璨瑰丽旖旎婀娜窈窕逶迤峥嵘嶙峋崎岖蹉跎踌躇徘徊彷徨惆怅缱绻
缠绵氤氲袅娜潋滟涟漪澎湃汹涌磅礴巍峨葱茏蓊郁苍翠蔚蓝靛青胭脂黛绛绯缃绀缇橙琪瑾瑜璋
琛琰瑶璇玑珩珏琮璟骐骥骏驹骊骢鹦鹉鸳鸯鹈鹕鸬鹚鹧鸪杜鹃芙蓉芍药牡丹茉莉蔷薇玫瑰菡萏
蒹葭苜蓿荼蘼薜荔蘅芜杜若芷兰蕙荪莎葳蕤菁蔓楸榆柘桑梓楠桧柏樟枫槭橡栎椿槐檀楝棠棣
""".strip().replace("\n", "")

ENGLISH_FIRST = """
ada alan grace linus barbara ken dennis margaret john mary james linda robert susan
michael karen david nancy william lisa richard betty joseph helen thomas sandra charles
donna daniel carol matthew ruth anthony sharon mark michelle donald laura steven sarah
paul kimberly andrew deborah joshua jessica kenneth shirley kevin cynthia brian angela
george melissa edward brenda ronald amy timothy anna jason rebecca jeffrey virginia
""".split()
ENGLISH_LAST = """
lovelace turing hopper torvalds liskov thompson ritchie hamilton smith johnson williams
brown jones garcia miller davis rodriguez martinez hernandez lopez gonzalez wilson
anderson thomas taylor moore jackson martin lee perez white harris clark lewis robinson
walker young allen king wright scott torres nguyen hill flores green adams nelson baker
""".split()
CHINESE_SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
)
CHINESE_GIVEN = list(
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉建国志文斌宇浩凯晨雪琳"
)

ROOM_NAMES = """
general random engineering backend frontend design product sales marketing support
ops incidents releases data hiring office travel music games food
""".split()


def zipf_weights(count: int, exponent: float = 1.0) -> list[float]:
    """Cumulative weights of ranks 1..count for random.choices(cum_weights=...)."""
    return list(itertools.accumulate(1.0 / (rank**exponent) for rank in range(1, count + 1)))


@dataclass(frozen=True)
class Vocabulary:
    """Real words (Zipf among themselves) and, with probability `tail_share`, a made-up word
    (Zipf among those): the tail is where the rare words are."""

    head: list[str]
    tail: list[str]
    tail_share: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "_head_cum", zipf_weights(len(self.head)))
        object.__setattr__(self, "_tail_cum", zipf_weights(len(self.tail)))

    def draw(self, rng: random.Random, k: int) -> list[str]:
        head: list[float] = self._head_cum  # type: ignore[attr-defined]
        tail: list[float] = self._tail_cum  # type: ignore[attr-defined]
        return [
            self.tail[pick(rng, tail)]
            if rng.random() < self.tail_share
            else self.head[pick(rng, head)]
            for _ in range(k)
        ]

    @property
    def words(self) -> list[str]:
        return [*self.head, *self.tail]


def english_vocabulary(tail_size: int = 20_000, seed: int = 7) -> Vocabulary:
    rng = random.Random(seed)
    real = list(dict.fromkeys([*ENGLISH_COMMON[:30], *ENGLISH_SHORT, *ENGLISH_COMMON[30:]]))
    seen = set(real)
    tail: list[str] = []
    while len(tail) < tail_size:
        made = "".join(rng.choices(ENGLISH_SYLLABLES, k=rng.choice((2, 3, 3, 4))))
        if len(made) >= 5 and made not in seen:
            seen.add(made)
            tail.append(made)
    return Vocabulary(real, tail, 0.06)


def chinese_vocabulary(tail_size: int = 15_000, seed: int = 11) -> Vocabulary:
    rng = random.Random(seed)
    real = list(dict.fromkeys(CHINESE_COMMON))
    seen = set(real)
    rare = list(dict.fromkeys(CHINESE_RARE_CHARS))
    tail: list[str] = []
    while len(tail) < tail_size:
        made = "".join(rng.choices(rare, k=rng.choice((2, 2, 3))))
        if made not in seen:
            seen.add(made)
            tail.append(made)
    return Vocabulary(real, tail, 0.05)


@dataclass(frozen=True)
class Person:
    pid: str
    email: str
    name: str


def people(count: int = 200, seed: int = 3) -> list[Person]:
    """Half English names, half Chinese ones; the list order is their activity rank."""
    rng = random.Random(seed)
    found: list[Person] = []
    names: set[str] = set()
    while len(found) < count:
        if len(found) % 2 == 0:
            name = f"{rng.choice(ENGLISH_FIRST).title()} {rng.choice(ENGLISH_LAST).title()}"
        else:
            name = rng.choice(CHINESE_SURNAMES) + "".join(
                rng.choices(CHINESE_GIVEN, k=rng.choice((1, 2)))
            )
        if name in names:
            continue
        names.add(name)
        index = len(found)
        found.append(Person(f"p-{index:04d}", f"user{index:04d}@example.org", name))
    return found


def rooms(count: int = 20) -> list[str]:
    """Room slugs, largest first."""
    return ROOM_NAMES[:count]


def _length(rng: random.Random, median: float) -> int:
    return max(20, min(200, int(rng.lognormvariate(math.log(median), 0.6))))


class TextMaker:
    """Message bodies: ~50 % English (median 70 characters), ~50 % Chinese (median 40)."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.english = english_vocabulary()
        self.chinese = chinese_vocabulary()

    def english_text(self) -> str:
        rng = self.rng
        target = _length(rng, 70)
        words: list[str] = []
        size = -1
        while size < target:
            batch = self.english.draw(rng, 8)
            if rng.random() < 0.03:  # a Chinese word in an English message
                batch[rng.randrange(8)] = self.chinese.draw(rng, 1)[0]
            for word in batch:
                if size + 1 + len(word) > 200:
                    break
                words.append(word)
                size += 1 + len(word)
            else:
                continue
            break
        text = " ".join(words)
        text = text[0].upper() + text[1:]
        return text + rng.choice((".", "", "", "?", "!", " :)"))[: 200 - len(text)]

    def chinese_text(self) -> str:
        rng = self.rng
        target = _length(rng, 40)
        out: list[str] = []
        size = 0
        while size < target:
            for word in self.chinese.draw(rng, 8):
                if rng.random() < 0.03:  # an English word in a Chinese message
                    word = " " + self.english.draw(rng, 1)[0] + " "
                if size + len(word) > 199:
                    break
                out.append(word)
                size += len(word)
                if rng.random() < 0.12 and size < 198:
                    out.append("，")
                    size += 1
            else:
                continue
            break
        return "".join(out).strip(" ，") + rng.choice(("。", "", "？", "！"))

    def text(self) -> str:
        return self.english_text() if self.rng.random() < 0.5 else self.chinese_text()


def texts(count: int, seed: int = 1) -> Iterator[str]:
    maker = TextMaker(seed)
    for _ in range(count):
        yield maker.text()


def person_weights(count: int) -> list[float]:
    return zipf_weights(count, 1.0)


def room_weights(count: int) -> list[float]:
    return zipf_weights(count, 0.8)


def pick(rng: random.Random, cumulative: list[float]) -> int:
    """An index drawn with these cumulative weights."""
    return bisect.bisect(cumulative, rng.random() * cumulative[-1])
